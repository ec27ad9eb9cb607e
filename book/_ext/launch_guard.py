"""Show launch buttons (Binder, Colab) only once the book names its repository.

sphinx-book-theme builds each launch link from ``repository.url`` and fails the build when
a launch provider is configured without one. This extension drops the launch buttons while
``repository.url`` in ``_config.yml`` is empty, so a fork or a local copy builds cleanly and
the buttons appear as soon as the URL is filled in.
"""


def _drop_launch_buttons_without_repository(app, config):
    theme_options = config.html_theme_options
    if not theme_options.get("repository_url"):
        theme_options.pop("launch_buttons", None)


def setup(app):
    app.connect("config-inited", _drop_launch_buttons_without_repository)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
