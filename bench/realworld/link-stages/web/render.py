"""Renders the static site from pages.txt (one 'name: title' per line) into the output dir."""
import pathlib
import sys

out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
pages = [l.split(":", 1) for l in pathlib.Path("pages.txt").read_text().splitlines() if l.strip()]
for name, title in pages:
    (out / f"{name.strip()}.html").write_text(f"<h1>{title.strip()}</h1>\n")
