#!/usr/bin/env bash
# Builds the manual (docs/ → docs/book) with mdBook, installing a pinned mdBook
# under target/tools when `mdbook` is not on PATH, then fails on any warning
# mdBook printed and on any link between the book's pages that leads to a
# missing page or a missing heading.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MDBOOK_VERSION=0.5.4
tools="$PWD/target/tools"
if command -v mdbook >/dev/null; then
  mdbook=mdbook
elif [[ -x "$tools/bin/mdbook" ]] && "$tools/bin/mdbook" --version | grep -qF "v$MDBOOK_VERSION"; then
  mdbook="$tools/bin/mdbook"
else
  echo "installing mdbook $MDBOOK_VERSION under target/tools"
  cargo install --locked mdbook --version "$MDBOOK_VERSION" --no-default-features --root "$tools"
  mdbook="$tools/bin/mdbook"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$mdbook" build docs 2>&1 | tee "$log"
if grep -E '\b(WARN|ERROR)\b' "$log" >/dev/null; then
  echo "mdbook printed warnings: fix them" >&2
  exit 1
fi

# Every link from one page of the book to another (or to a heading) must land.
python3 - docs/book <<'EOF'
import html.parser, os, sys, urllib.parse

root = sys.argv[1]

class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links = set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])

pages = {}
for dirpath, _, files in os.walk(root):
    for f in files:
        if f.endswith(".html"):
            path = os.path.join(dirpath, f)
            page = Page()
            with open(path, encoding="utf-8") as fh:
                page.feed(fh.read())
            pages[os.path.relpath(path, root)] = page

broken = []
for name, page in sorted(pages.items()):
    if name in ("print.html", "404.html", "toc.html"):
        continue
    for href in page.links:
        url = urllib.parse.urlsplit(href)
        if url.scheme or url.netloc or href.startswith("mailto:"):
            continue
        target = name if not url.path else os.path.normpath(
            os.path.join(os.path.dirname(name), urllib.parse.unquote(url.path)))
        if target.endswith("/") or target == ".":
            target = os.path.join(target, "index.html")
        if target.endswith(".md"):
            broken.append(f"{name}: {href} (a .md link the book did not rewrite)")
        elif target.endswith(".html") and target not in pages:
            broken.append(f"{name}: {href} (no page {target})")
        elif url.fragment and target in pages and urllib.parse.unquote(url.fragment) not in pages[target].ids:
            broken.append(f"{name}: {href} (no heading #{url.fragment} in {target})")
if broken:
    print("broken links in the manual:", *broken, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"manual: {len(pages)} pages, every link between them lands")
EOF
