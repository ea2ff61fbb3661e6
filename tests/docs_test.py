"""The documentation's links hold: every image the README or a doc shows is a file the repository
tracks (an untracked or ignored figure shows as a broken image on the project's page), and every
relative link points at a file that exists."""
import os
import re
import subprocess

from tests.conftest import ROOT

LINK = re.compile(r"(!?)\[[^\]]*\]\(([^)\s#]+)(?:#[^)]*)?\)")


def doc_links():
  """(document, is an image, target path relative to the repository) of every relative link."""
  docs = ["README.md"] + [os.path.join("docs", n) for n in sorted(os.listdir(
      os.path.join(ROOT, "docs"))) if n.endswith(".md")]
  for doc in docs:
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
      for image, target in LINK.findall(f.read()):
        if not re.match(r"^[a-z]+:", target):
          yield doc, bool(image), os.path.normpath(os.path.join(os.path.dirname(doc), target))


def test_every_linked_image_is_tracked_and_every_link_exists():
  tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.splitlines())
  links = list(doc_links())
  images = [(d, t) for d, image, t in links if image]
  assert images, "the README shows at least one figure"
  assert [f"{d}: {t}" for d, t in images if t not in tracked] == []
  assert [f"{d}: {t}" for d, _, t in links if not os.path.exists(os.path.join(ROOT, t))] == []
