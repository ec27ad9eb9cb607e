"""The built book reads offline: every page, opened in headless Chromium with the network cut.

Run after building the book (`make test` does both): `pytest tests/browser`. The HTML folder
is `_build/html`, or the folder named by the environment variable BOOK_HTML.

Per page, the browser test asserts that no request left the machine (every request other
than file:, data: and blob: is aborted and recorded), that no local file it asked for is
missing, that every image loaded, and, on pages with math, that MathJax typeset every formula
without a TeX error. A second test reads the HTML itself, so that resources a browser fetches
only on demand (a lazy iframe, a preload) cannot name a remote URL either.

Chromium is Debian's (`apt-get install chromium`), driven by Playwright without downloading
a browser. Without it the browser test is skipped, unless REQUIRE_BROWSER=1 (as in CI), when
it fails.
"""

import os
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML_DIR = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html")).resolve()
# Debian's Chromium; BOOK_CHROMIUM names another Chromium binary.
CHROMIUM = Path(os.environ.get("BOOK_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_SCHEMES = {"file", "data", "blob", "about"}
# Generated pages without content of their own.
SKIPPED_PAGES = {"genindex.html", "search.html"}
SKIPPED_FOLDERS = {"_sources", "_static"}
MATHJAX_TIMEOUT_MS = 20_000
BUILD_HINT = "build the book first (`make book`), or point BOOK_HTML at a built HTML folder"


def book_pages() -> list[str]:
    """Paths (relative to HTML_DIR) of the pages to check; empty when the book is not built."""
    if not HTML_DIR.is_dir():
        return []
    return sorted(
        path.relative_to(HTML_DIR).as_posix()
        for path in HTML_DIR.rglob("*.html")
        if path.name not in SKIPPED_PAGES
        and not SKIPPED_FOLDERS & set(path.relative_to(HTML_DIR).parts)
    )


PAGES = book_pages()


def redirect_target(html: str) -> str | None:
    """The URL of a `<meta http-equiv="Refresh">` stub page (the book's index.html), if any."""
    match = re.search(
        r'<meta\s+http-equiv="refresh"\s+content="\d+;\s*url=([^"]+)"', html, re.IGNORECASE
    )
    return match.group(1) if match else None


# Attributes through which a page loads something to show it (links a reader clicks are fine).
LOADING_ATTRIBUTES = {
    "script": ("src",),
    "img": ("src", "srcset"),
    "iframe": ("src",),
    "frame": ("src",),
    "source": ("src", "srcset"),
    "video": ("src", "poster"),
    "audio": ("src",),
    "track": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "input": ("src",),
}
LOADING_LINK_RELS = {
    "stylesheet",
    "preload",
    "modulepreload",
    "prefetch",
    "preconnect",
    "dns-prefetch",
    "icon",
    "apple-touch-icon",
    "manifest",
}
REMOTE_URL = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
CSS_REMOTE_URL = re.compile(r"url\(\s*['\"]?\s*(https?:)?//", re.IGNORECASE)


class RemoteResourceFinder(HTMLParser):
    """Collects the tags that would load a remote resource to display the page."""

    def __init__(self):
        super().__init__()
        self.remote: list[str] = []

    def handle_starttag(self, tag, attrs):
        values = {name: value or "" for name, value in attrs}
        names = LOADING_ATTRIBUTES.get(tag, ())
        if tag == "link" and LOADING_LINK_RELS & set(values.get("rel", "").lower().split()):
            names = ("href",)
        for name in names:
            urls = values.get(name, "")
            candidates = urls.split(",") if name == "srcset" else [urls]
            if any(REMOTE_URL.match(candidate) for candidate in candidates):
                self.remote.append(f"<{tag} {name}={urls!r}>")
        if CSS_REMOTE_URL.search(values.get("style", "")):
            self.remote.append(f"<{tag} style={values['style']!r}>")


def test_the_book_is_built():
    assert PAGES, f"no HTML pages under {HTML_DIR}: {BUILD_HINT}"


@pytest.mark.parametrize("page", PAGES)
def test_page_names_no_remote_resource(page):
    html = (HTML_DIR / page).read_text(encoding="utf-8")
    finder = RemoteResourceFinder()
    finder.feed(html)
    remote = finder.remote + [
        f"<style> {match.group(0)}..."
        for style in re.findall(r"<style[^>]*>(.*?)</style>", html, re.DOTALL | re.IGNORECASE)
        for match in CSS_REMOTE_URL.finditer(style)
    ]
    assert not remote, f"{page} loads remote resources: " + "; ".join(remote)


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    """One headless Chromium, offline, for every page; yields (context, network log)."""
    if not CHROMIUM.exists():
        reason = (
            f"{CHROMIUM} not found: install Debian's Chromium (`apt-get install chromium`) "
            "to run the offline browser test"
        )
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    network_log = {"remote": [], "missing": []}

    def block_remote(route):
        url = route.request.url
        if urlsplit(url).scheme in LOCAL_SCHEMES:
            route.continue_()
        else:
            route.abort("internetdisconnected")

    def record_request(request):
        if urlsplit(request.url).scheme not in LOCAL_SCHEMES:
            network_log["remote"].append(f"{request.resource_type} {request.url}")

    def record_failure(request):
        if urlsplit(request.url).scheme == "file":
            network_log["missing"].append(f"{request.url} ({request.failure})")

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            offline=True,
        )
        context.route("**/*", block_remote)
        context.on("request", record_request)
        context.on("requestfailed", record_failure)
        context.on(
            "page",
            lambda page: page.on(
                "websocket", lambda socket: network_log["remote"].append(f"websocket {socket.url}")
            ),
        )
        yield context, network_log
        context.close()


# Waits for every <img> to finish (lazy ones are switched to eager first), then reports those
# that did not load.
BROKEN_IMAGES_JS = """
async () => {
  const images = Array.from(document.images);
  images.forEach((img) => { img.loading = "eager"; });
  await Promise.all(images.map((img) => img.complete ? null : new Promise((done) => {
    img.addEventListener("load", done); img.addEventListener("error", done);
  })));
  return images.filter((img) => !(img.complete && img.naturalWidth > 0))
    .map((img) => img.getAttribute("src"));
}
"""

# Waits for MathJax's first typesetting pass and its fonts, then reports what went wrong.
# MathJax's own list of typeset formulas gives each one's TeX, so an error names its formula.
MATH_REPORT_JS = """
async (timeoutMs) => {
  const mathElements = Array.from(document.querySelectorAll(".math"));
  const problems = [];
  if (mathElements.length === 0) return problems;
  if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
    return ["MathJax did not load: window.MathJax.startup is missing"];
  }
  const timeout = new Promise((_, reject) => setTimeout(
    () => reject(new Error(`MathJax did not finish typesetting within ${timeoutMs} ms`)),
    timeoutMs));
  try {
    await Promise.race([MathJax.startup.promise, timeout]);
    await Promise.race([document.fonts.ready, timeout]);
  } catch (error) {
    return [String(error.message)];
  }
  for (const font of document.fonts) {
    if (font.status === "error") problems.push(`font ${font.family} failed to load`);
  }
  const texOf = new Map();
  for (const item of MathJax.startup.document.math) {
    if (item.typesetRoot) texOf.set(item.typesetRoot, item.math);
    const mathml = MathJax.startup.toMML(item.root);
    if (mathml.includes("<merror")) {
      problems.push(`TeX error in ${JSON.stringify(item.math)}`);
    } else if (/<mtext[^>]*mathcolor="red"[^>]*>\\\\/.test(mathml)) {
      problems.push(`undefined macro in ${JSON.stringify(item.math)}`);
    }
  }
  for (const error of document.querySelectorAll("mjx-merror")) {
    const container = error.closest("mjx-container");
    if (!texOf.has(container)) {
      problems.push(`MathJax error node: ${error.getAttribute("data-mjx-error")}`);
    }
  }
  mathElements.forEach((element, index) => {
    const leftover = Array.from(element.childNodes)
      .filter((node) => node.nodeType === Node.TEXT_NODE)
      .map((node) => node.textContent).join("").trim();
    if (!element.querySelector("mjx-container")) {
      problems.push(`math element ${index + 1} was not typeset: ` +
        JSON.stringify(element.textContent.trim().slice(0, 80)));
    } else if (/\\\\|\\$/.test(leftover)) {
      problems.push(`raw TeX left in math element ${index + 1}: ` +
        JSON.stringify(leftover.slice(0, 80)));
    }
  });
  return problems;
}
"""


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_offline(browser_context, page):
    context, network_log = browser_context
    path = HTML_DIR / page
    target = redirect_target(path.read_text(encoding="utf-8"))
    if target is not None:
        resolved = (path.parent / unquote(urlsplit(target).path)).resolve()
        assert resolved.is_file(), f"{page} redirects to {target}, which does not exist"
        return  # the target is checked as a page of its own

    for entries in network_log.values():
        entries.clear()
    tab = context.new_page()
    script_errors = []
    tab.on("pageerror", lambda error: script_errors.append(error.message))
    try:
        tab.goto(path.as_uri(), wait_until="load")
        broken_images = tab.evaluate(BROKEN_IMAGES_JS)
        math_problems = tab.evaluate(MATH_REPORT_JS, MATHJAX_TIMEOUT_MS)
    finally:
        tab.close()

    failures = [f"request left the machine: {entry}" for entry in network_log["remote"]]
    failures += [f"local file missing: {entry}" for entry in network_log["missing"]]
    failures += [f"image did not load: {src}" for src in broken_images]
    failures += [f"math: {problem}" for problem in math_problems]
    failures += [f"script error: {error}" for error in script_errors]
    assert not failures, f"{page} does not render offline:\n  " + "\n  ".join(failures)
