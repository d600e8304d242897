"""Every code block of the diffusers inpainting guide, run as written on the twins, offline.

The guide is read from its markdown (``NBINPAINT_GUIDE``, else a cached copy of diffusers' own page at the
installed version; see `tests.guide_source`: without either, these tests skip and say why) and each
section's blocks run in order in one namespace, so chained blocks see what earlier ones made.
The only edits are the ones a CPU and no network force, applied mechanically by `localize`: image URLs
become local stand-ins of the same size and role, ``"cuda"`` becomes the local device, and on a CPU the
xFormers and CPU-offload lines are dropped and ``torch.float16`` reads as ``torch.float32``.
"""

from __future__ import annotations

import re

import pytest
import torch

from nbinpaint import samples
from tests import guide_source

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
URL = re.compile(r"""["'](https?://[^"']+)["']""")

pytestmark = [pytest.mark.guide, pytest.mark.slow]


def sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading, python blocks) for every heading that has python code under it, in document order."""
    found: list[tuple[str, list[str]]] = []
    heading = "intro"
    for match in re.finditer(r"^(#{1,4}) ([^\n]+)$|^```py\n(.*?)^```", text, re.M | re.S):
        if match.group(2):
            heading = match.group(2).strip()
        elif match.group(3):
            if not found or found[-1][0] != heading:
                found.append((heading, []))
            found[-1][1].append(match.group(3))
    return found


def localize(code: str, device: str, images: dict[str, str]) -> str:
    """The guide's block with the edits a machine without CUDA and network needs, and nothing else."""
    lines = []
    for line in code.splitlines():
        if "enable_xformers_memory_efficient_attention" in line or "remove following line if xFormers" in line:
            continue
        if device == "cpu" and "enable_model_cpu_offload" in line:
            continue
        lines.append(line)
    code = "\n".join(lines)
    code = URL.sub(lambda m: repr(images[m.group(1)]), code)
    code = re.sub(r"""(["'])cuda\1""", repr(device), code)
    if device == "cpu":
        code = code.replace("torch.float16", "torch.float32")
    return code


try:
    GUIDE_TEXT, GUIDE_PROBLEM = guide_source.text(), ""
except guide_source.GuideMissing as error:  # NBINPAINT_GUIDE set, file missing: fail, never skip
    GUIDE_TEXT, GUIDE_PROBLEM = "", str(error)
SECTIONS = sections(GUIDE_TEXT)
# The image URLs the guide's code loads (its HTML figures are not code and are left alone).
CODE_URLS = list(dict.fromkeys(u for _, blocks in SECTIONS for b in blocks for u in URL.findall(b)))


def test_the_guide_is_here_and_parsed():
    assert not GUIDE_PROBLEM, GUIDE_PROBLEM
    if not GUIDE_TEXT:
        pytest.skip(guide_source.reason())
    blocks = sum(len(b) for _, b in SECTIONS)
    assert blocks >= 20, f"parsed only {blocks} code blocks from the guide ({guide_source.reason()})"


@pytest.fixture(scope="module")
def standins(tmp_path_factory) -> dict[str, str]:
    """Each image URL of the guide -> a local PNG of the same size and role."""
    folder = tmp_path_factory.mktemp("guide-images")
    paths = {}
    for index, url in enumerate(CODE_URLS):
        path = folder / f"{index}.png"
        samples.guide_image(url).save(path)
        paths[url] = str(path)
    return paths


# Without the guide, one skipped case that says why (pytest's own "empty parameter set" says nothing useful).
NO_GUIDE = pytest.mark.skip(reason=GUIDE_PROBLEM or guide_source.reason())
CASES = SECTIONS or [pytest.param("no guide", [], marks=NO_GUIDE)]


@pytest.mark.parametrize(("heading", "blocks"), CASES, ids=[h for h, _ in SECTIONS] or ["no guide"])
def test_guide_section_runs_on_twins(heading, blocks, standins, twins_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # some blocks save PNGs into the working directory
    namespace: dict = {"__name__": "guide"}
    if heading == "Prompt weighting":
        # The guide's block takes prompt_embeds "generated from Compel" (its prompt weighting page) and the
        # base and mask images from earlier sections: make them the way those pages do.
        namespace.update(_prompt_weighting_inputs(standins))
    if heading == "Optimize":
        # A one-line snippet applied to "your pipeline": give it one, and the torch the page imported.
        from diffusers import AutoPipelineForInpainting

        namespace["pipeline"] = AutoPipelineForInpainting.from_pretrained("runwayml/stable-diffusion-inpainting")
        namespace["torch"] = torch
    if heading == "ControlNet":
        # The guide's block calls PIL.Image.fromarray without importing PIL (on its page an earlier section's
        # `import PIL` happens to cover it): the one name the guide itself forgets.
        import PIL.Image

        namespace["PIL"] = PIL
    for index, block in enumerate(blocks):
        code = localize(block, DEVICE, standins)
        exec(compile(code, f"<guide: {heading} block {index + 1}>", "exec"), namespace)
    image = namespace.get("image")
    if image is not None and not isinstance(image, torch.Tensor):
        assert image.size[0] >= 512, f"{heading}: unexpected output size {image.size}"


def _prompt_weighting_inputs(standins: dict[str, str]) -> dict:
    from compel import Compel
    from diffusers import AutoPipelineForInpainting
    from diffusers.utils import load_image

    url = "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/inpaint.png"
    pipeline = AutoPipelineForInpainting.from_pretrained("runwayml/stable-diffusion-inpainting")
    compel = Compel(tokenizer=pipeline.tokenizer, text_encoder=pipeline.text_encoder)
    return {
        "prompt_embeds": compel("a castle++ in the mountains"),
        "negative_prompt_embeds": compel("blurry--"),
        "init_image": load_image(standins[url]),
        "mask_image": load_image(standins[url.replace("inpaint.png", "inpaint_mask.png")]),
    }
