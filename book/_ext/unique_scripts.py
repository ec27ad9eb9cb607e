"""Give each page every inline script once.

Sphinx 7.4's HTML builder files an inline script (``app.add_js_file(None, body=...)``) under
the file name ``""`` when it starts, and under ``None`` when an extension adds it later, and
checks for duplicates by comparing both. sphinx-thebe and sphinx-togglebutton register their
inline scripts at both moments, so every page declared ``const THEBE_JS_URL`` twice and the
browser reported a script error. This extension makes the builder file every inline script
under ``""``, so its own duplicate check keeps one copy.
"""


def _file_inline_scripts_alike(app):
    builder = app.builder
    add_js_file = getattr(builder, "add_js_file", None)
    if add_js_file is None:  # not an HTML builder
        return

    def add_js_file_once(filename, **kwargs):
        add_js_file(filename or "", **kwargs)

    builder.add_js_file = add_js_file_once


def setup(app):
    app.connect("builder-inited", _file_inline_scripts_alike)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
