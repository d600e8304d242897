"""A recipe is someone else's data: what a shared PNG's recipe can and cannot make nbinpaint do.

Three promises, each tested with recipes written the way a hostile PNG author would write them:

- Copy-as-code adds no statement: every recipe value reaches the script as a quoted literal or was checked
  against its type, so the script's statements, calls and names are those of a clean recipe's script.
- Inputs stay in the recipe's folder: a recipe cannot make `rerun` or `History.load` read (and autosave
  copy) any other file, by ``..``, an absolute or drive path, or a link leading out.
- A malformed entry is a `RecipeError` naming it, and `History.load` skips that PNG only.

None of these tests runs a pipeline: recipes are written by hand, and copy-as-code needs only the pipeline
classes. The real round trips are in test_recipes.py, test_history.py and test_codegen.py.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from nbinpaint import codegen, notices, recipes, session
from nbinpaint.errors import NbinpaintError
from nbinpaint.history import History
from nbinpaint.recipes import RecipeError
from nbinpaint.requests import OUTPUT_TYPES, TASKS, InpaintRequest
from tests.conftest import make_scene

SD_INPAINT = "runwayml/stable-diffusion-inpainting"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The issue's recipe value, and what else closes a string, a docstring or a comment, or hides text from a reader.
ISSUE_DEVICE = 'cpu\n"""\nimport os; os.system("echo pwned > pwned.txt")\n"""'
HOSTILE = [
    ISSUE_DEVICE,
    '"""\nimport os\n"""',
    "'''\nimport os\n'''",
    '"); import os; os.system("id"); ("',
    "'); import os; ('",
    "x\rimport os",
    "x\r\nimport os",
    "x\x0cimport os",
    "x\x0bimport os",
    "x\u2028import os",
    "x\u2029import os",
    "x\x85import os",
    "x\x00y",
    "\\",
    "x\\",
    '\\"); import os #',
    "{__import__('os').system('id')}",
    "}{",
    "# comment\nimport os",
    "a\u202eevil\u202c",  # a bidi override: the reader would see other text than Python runs
    "zero\u200bwidth",
    "\ud800 half of a pair",
    "été 城 🎨",
    "",
    " ",
]


# --------------------------------------------------------------------------------------------------------
# Clean recipes, as nbinpaint writes them, and the shape of the code made from them.
# --------------------------------------------------------------------------------------------------------


def clean_recipe(kind: str = "sd") -> dict[str, Any]:
    """A recipe as build_recipe + save_result write it, with every optional string set (so a hostile value
    in it changes no branch of copy-as-code)."""
    model, pipeline, dtype, changes = {
        "sd": (SD_INPAINT, "StableDiffusionInpaintPipeline", "float32", {}),
        "controlnet": (SD15, "StableDiffusionControlNetInpaintPipeline", "float32", {}),
        "classical": ("classical/telea", "ClassicalInpaintPipeline", "n/a", {}),
    }[kind]
    request = InpaintRequest(
        prompt="a stone bridge",
        negative_prompt="blurry",
        model=model,
        seed=7,
        blur_factor=3.0,
        preserve_unmasked=True,
        width=64,
        height=64,
        **changes,
    )
    if kind != "classical":
        request = request.replace(
            steps=4, strength=0.75, guidance_scale=6.5, padding_mask_crop=8, variant="fp16", extra={"clip_skip": 1}
        )
    request = request.replace(num_images=2)  # several images: file names made by an f-string
    if kind == "controlnet":
        request = request.replace(controlnet="lllyasviel/control_v11p_sd15_inpaint", controlnet_conditioning_scale=0.8)
    return {
        "nbinpaint_recipe": recipes.RECIPE_VERSION,
        "model": model,
        "task": "inpaint",
        "pipeline": pipeline,
        "parameters": request.parameters(),
        "seed": 7,
        "input_size": [64, 64],
        "run_size": [64, 64],
        "device": "cpu",
        "dtype": dtype,
        "twin": True,
        "versions": {"nbinpaint": "0.1.0", "diffusers": "0.32.0", "transformers": "4.47.0", "torch": "2.5.1+cpu"},
        "created": "2026-01-01T00:00:00+00:00",
        "note": recipes.TWIN_NOTE,
        "inputs": {"image": "inputs/image-0123456789abcdef.png", "mask": "inputs/mask-0123456789abcdef.png"},
    }


KINDS = ("sd", "controlnet", "classical")


def _target(node: ast.AST) -> str:
    """A call's target with its literals left out: ``load_image(...).convert``, ``torch.Generator(...).manual_seed``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_target(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return f"{_target(node.func)}(...)"
    if isinstance(node, ast.Subscript):
        return f"{_target(node.value)}[...]"
    return type(node).__name__


def structure(text: str) -> list[str]:
    """What a script does, whatever its literal values: every statement, call target, name and import."""
    shape = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.stmt):
            shape.append(type(node).__name__)
        elif isinstance(node, ast.Call):
            shape.append(f"call {_target(node.func)}")
        elif isinstance(node, ast.Name):
            shape.append(f"name {node.id}")
        elif isinstance(node, ast.alias):
            shape.append(f"import {node.name}")
    return shape


@pytest.fixture(scope="module")
def clean_code() -> dict[str, str]:
    return {kind: codegen.code_for(clean_recipe(kind)) for kind in KINDS}


def assert_same_code_shape(text: str, clean: str) -> None:
    assert structure(text) == structure(clean)
    # No raw line break of any kind (Python reads \r and form feed as ones; a viewer shows U+2028 as one) and
    # no invisible or reordering character: the script shows what it runs.
    assert len(text.splitlines()) == len(clean.splitlines())
    assert all(c.isprintable() or c == "\n" for c in text)


def leaf_paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Every place in a recipe a value sits, containers included."""
    found = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += leaf_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += leaf_paths(item, (*path, index))
    return found


def replaced(recipe: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(recipe)
    holder = changed
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = value
    return changed


def at(recipe: dict[str, Any], path: tuple) -> Any:
    for step in path:
        recipe = recipe[step]
    return recipe


def string_paths(recipe: dict[str, Any]) -> list[tuple]:
    return [path for path in leaf_paths(recipe) if isinstance(at(recipe, path), str)]


def outcome(call, *args, **kwargs):
    """``(result, None)``, or ``(None, error)`` for an nbinpaint error, which must say why."""
    try:
        return call(*args, **kwargs), None
    except NbinpaintError as error:
        refused = error
    assert str(refused)
    return None, refused


# --------------------------------------------------------------------------------------------------------
# 3. Show code runs nothing a recipe says.
# --------------------------------------------------------------------------------------------------------


def test_the_issues_device_value_is_refused_not_written_into_the_docstring():
    recipe = {**clean_recipe(), "device": ISSUE_DEVICE}
    with pytest.raises(RecipeError, match=r"'device' must be a torch device such as 'cpu'") as refused:
        codegen.code_for(recipe)
    assert refused.value.field == "device"
    assert "\n" not in str(refused.value)  # the message quotes the value escaped, on one line


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_text_in_any_recipe_string_is_refused_or_quoted(kind, clean_code):
    """Every string anywhere in a recipe (model, controlnet, device, dtype, prompts, variant, extra keys and
    values, versions, input names, pipeline class, dates, notes) with every hostile value: a RecipeError, or
    a script of exactly the clean script's statements, calls and names."""
    recipe = clean_recipe(kind)
    written = refused = 0
    for path in string_paths(recipe):
        for text in HOSTILE:
            script, error = outcome(codegen.code_for, replaced(recipe, path, text))
            if error is not None:
                refused += 1
                continue
            assert_same_code_shape(script, clean_code[kind])
            written += 1
    assert written and refused  # free text is quoted, names are checked: both happen


@pytest.mark.parametrize("field", ["prompt", "negative_prompt"])
@pytest.mark.parametrize("text", [t for t in HOSTILE if "\ud800" not in t])
def test_prompts_reach_the_script_as_the_exact_literal(field, text, clean_code):
    recipe = clean_recipe()
    recipe["parameters"][field] = text
    script = codegen.code_for(recipe)
    assert_same_code_shape(script, clean_code["sd"])
    (call,) = [n for n in ast.walk(ast.parse(script)) if isinstance(n, ast.Call) and _target(n.func) == "pipeline"]
    (passed,) = [ast.literal_eval(keyword.value) for keyword in call.keywords if keyword.arg == field]
    assert passed == text


@pytest.mark.parametrize("text", [t for t in HOSTILE if t.strip() and t.isprintable()])
def test_model_and_controlnet_ids_reach_the_script_as_the_exact_literal(text, clean_code):
    """Names are one printable line (checked), and quoted like any text: quotes and braces stay text."""
    recipe = clean_recipe("controlnet")
    recipe["model"] = recipe["parameters"]["model"] = text
    recipe["parameters"]["controlnet"] = text + "/controlnet"
    script = codegen.code_for(recipe)
    assert_same_code_shape(script, clean_code["controlnet"])
    loads = [
        n for n in ast.walk(ast.parse(script)) if isinstance(n, ast.Call) and _target(n.func).endswith("pretrained")
    ]
    assert [ast.literal_eval(call.args[0]) for call in loads] == [text + "/controlnet", text]


@pytest.mark.parametrize("text", HOSTILE)
def test_extra_values_and_nested_values_are_literals(text, clean_code):
    recipe = clean_recipe()
    recipe["parameters"]["extra"]["clip_skip"] = {"nested": [text, {"deeper": text}], text: 1}
    script = codegen.code_for(recipe)
    assert_same_code_shape(script, clean_code["sd"])


@pytest.mark.parametrize(
    "where",
    [("parameters", "extra"), ("versions",), ("inputs",), ("parameters",), ()],
    ids=["extra", "versions", "inputs", "parameters", "top"],
)
@pytest.mark.parametrize("key", [t for t in HOSTILE if t.strip()] + ["import", "a=1, b", "print(1) or x", "é"])
def test_hostile_keys_are_refused_or_inert(where, key, clean_code):
    recipe = clean_recipe()
    holder = recipe
    for step in where:
        holder = holder[step]
    holder[key] = 1 if where == ("parameters", "extra") else "0.1.0"
    script, error = outcome(codegen.code_for, recipe)
    if error is None:  # a version's library name is words in the docstring; other entries are data, not code
        assert where in [(), ("versions",)]
        assert_same_code_shape(script, clean_code["sd"])
    else:
        assert isinstance(error, RecipeError) and error.field.startswith(where[0] if where else "[")


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("os.system", RecipeError, "'pipeline' must be a pipeline class name"),
        ("StableDiffusionInpaintPipeline\nimport os", RecipeError, "'pipeline' must be a pipeline class name"),
        ("__import__", RecipeError, "'pipeline' must be a pipeline class name"),
        ("UNet2DConditionModel", RecipeError, "is no diffusers pipeline class"),
        ("DiffusionPipeline", RecipeError, "is no diffusers pipeline class"),
        ("AutoPipelineForInpainting", RecipeError, "is no diffusers pipeline class"),
        ("NoSuchPipeline", codegen.CodegenError, "install the diffusers version"),
        (["StableDiffusionInpaintPipeline"], RecipeError, "'pipeline' must be a pipeline class name"),
    ],
)
def test_the_pipeline_class_is_a_diffusers_pipeline_or_refused(name, error, message):
    with pytest.raises(error, match=message) as refused:
        codegen.code_for({**clean_recipe(), "pipeline": name})
    if error is RecipeError:
        assert refused.value.field == "pipeline"


@pytest.mark.parametrize("text", HOSTILE[:-2])
def test_paths_given_to_code_for_are_literals(text):
    recipe = clean_recipe()
    recipe["parameters"]["num_images"] = 2  # several outputs: file names built in an f-string
    clean = codegen.code_for(recipe)
    script = codegen.code_for(recipe, image_path=text + ".png", mask_path=text, output_path=f"{text}{{x}}.png")
    assert_same_code_shape(script, clean)


def test_every_docstring_and_comment_line_is_nbinpaints_own(clean_code):
    """Only checked names (versions, device, dtype, the pipeline's class) appear in the docstring and comments."""
    for kind, text in clean_code.items():
        docstring = ast.get_docstring(ast.parse(text))
        assert "0.32.0" in docstring and "on cpu" in docstring, kind
        if kind != "classical":
            assert "# Load the pipeline (StableDiffusion" in text or "# Load the ControlNet" in text


# --------------------------------------------------------------------------------------------------------
# 4. Input paths stay in the recipe's folder.
# --------------------------------------------------------------------------------------------------------


class NoRuns:
    """A manager that must never be asked to run."""

    def run(self, request):
        raise AssertionError("a refused recipe must not run")


def save_result(folder: Path, recipe: dict[str, Any], name: str = "00001-seed7.png") -> Path:
    """A result PNG carrying ``recipe``, with the clean recipe's image and mask files beside it."""
    image, mask = make_scene(64)
    for role, picture in (("image", image), ("mask", mask)):
        relative = clean_recipe()["inputs"][role]
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        picture.save(folder / relative)
    path = folder / name
    info = PngInfo()  # written as a hostile author would, not through save_png
    info.add_text(recipes.RECIPE_KEY, json.dumps(recipe), zip=True)
    image.save(path, format="PNG", pnginfo=info)
    return path


@pytest.fixture
def secret(tmp_path) -> Path:
    """A picture of the user's, outside the results folder, that no recipe may read."""
    outside = tmp_path / "private"
    outside.mkdir()
    path = outside / "secret.png"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(path)
    return path


@pytest.fixture
def results(tmp_path) -> Path:
    folder = tmp_path / "shared" / "results"
    folder.mkdir(parents=True)
    return folder


def escaping_references(secret: Path) -> list[str]:
    return [
        "../../private/secret.png",
        "inputs/../../../private/secret.png",
        str(secret),  # absolute
        "//" + str(secret).lstrip("/"),
        f"C:{secret}",
        "C:/private/secret.png",
        "C:secret.png",
        "\\\\server\\share\\secret.png",
        "inputs\\..\\..\\..\\private\\secret.png",
        "inputs/mask.png\x00../../private/secret.png",
        "..",
        ".",
        "",
        "inputs/\n../../private/secret.png",
    ]


@pytest.mark.parametrize("index", range(14))
def test_input_paths_leading_out_are_refused_naming_them(index, secret, results):
    reference = escaping_references(secret)[index]
    recipe = {**clean_recipe(), "inputs": {"image": reference, "mask": "inputs/mask-0123456789abcdef.png"}}
    png = save_result(results, recipe)
    for call in (lambda: recipes.load_inputs(recipe, results), lambda: session.rerun(png, manager=NoRuns())):
        with pytest.raises(RecipeError) as refused:
            call()
        assert refused.value.field == "inputs.image"
        assert repr(reference)[1:20] in str(refused.value) or reference == ""  # named, escaped


def test_links_leading_out_of_the_folder_are_refused(secret, results):
    recipe = clean_recipe()
    png = save_result(results, recipe)
    image_file = results / recipe["inputs"]["image"]
    image_file.unlink()
    image_file.symlink_to(secret)  # a file link
    with pytest.raises(RecipeError, match=r"leads to .*secret\.png, outside the recipe's folder") as refused:
        session.rerun(png, manager=NoRuns())
    assert refused.value.field == "inputs.image"
    # A folder link: inputs/ itself points at the private folder.
    os.rename(results / "inputs", results / "real-inputs")
    (results / "inputs").symlink_to(secret.parent, target_is_directory=True)
    with pytest.raises(RecipeError, match="outside the recipe's folder"):
        recipes.load_inputs(recipe, results)


def test_links_inside_the_folder_and_the_folder_given_through_a_link_still_work(results, tmp_path):
    recipe = clean_recipe()
    save_result(results, recipe)
    image_file = results / recipe["inputs"]["image"]
    moved = results / "inputs" / "elsewhere.png"
    os.rename(image_file, moved)
    image_file.symlink_to(moved)  # inside: fine
    (tmp_path / "via-link").symlink_to(results, target_is_directory=True)
    loaded = recipes.load_inputs(recipe, tmp_path / "via-link")
    assert loaded["image"].size == (64, 64) and loaded["mask"].mode == "L"


def test_only_known_input_roles_are_read(secret, results):
    recipe = {**clean_recipe(), "inputs": {"image": "inputs/x.png", "secret": "inputs/x.png"}}
    with pytest.raises(RecipeError, match=r"'inputs.secret' is no input role: the roles are image, mask") as refused:
        recipes.load_inputs(recipe, results)
    assert refused.value.field == "inputs.secret"
    assert recipes.INPUT_ROLES == ("image", "mask", "control_image")


def test_history_load_reads_nothing_outside_and_copies_nothing_in(secret, results):
    good = clean_recipe()
    save_result(results, good, "00001-seed7.png")
    save_result(results, {**good, "inputs": {"image": str(secret), "mask": good["inputs"]["mask"]}}, "00002-seed7.png")
    before = sorted(p.relative_to(results) for p in results.rglob("*"))
    history = History.load(results)
    assert [entry.id for entry in history] == ["00001-seed7"]
    assert sorted(p.relative_to(results) for p in results.rglob("*")) == before  # no copy of the secret


# --------------------------------------------------------------------------------------------------------
# 8. A malformed entry is a RecipeError naming it; History.load skips that PNG only.
# --------------------------------------------------------------------------------------------------------


def _set(path: tuple, value: Any):
    return lambda recipe: replaced(recipe, path, value)


def _merge(changes: dict[str, Any]):
    return lambda recipe: {**recipe, **changes}


MALFORMED = {
    "seed-a-list": (_set(("seed",), [1]), "seed"),
    "seed-text": (_set(("seed",), "7"), "seed"),
    "seed-too-large": (_set(("seed",), 2**64), "seed"),
    "seed-negative": (_set(("parameters", "seed"), -1), "parameters.seed"),
    "image-in-parameters": (_set(("parameters", "image"), "inputs/image.png"), "parameters.image"),
    "unknown-setting": (_set(("parameters", "stepz"), 3), "parameters.stepz"),
    "versions-a-list": (_set(("versions",), ["diffusers", "0.32"]), "versions"),
    "versions-nested": (_set(("versions", "torch"), {"a": [1]}), "versions.torch"),
    "parameters-text": (_set(("parameters",), "steps=3"), "parameters"),
    "strength-nan": (_set(("parameters", "strength"), float("nan")), "parameters.strength"),
    "strength-infinite": (_set(("parameters", "strength"), float("inf")), "parameters.strength"),
    "strength-out-of-range": (_set(("parameters", "strength"), 7), "parameters.strength"),
    "steps-a-bool": (_set(("parameters", "steps"), True), "parameters.steps"),
    "steps-fraction": (_set(("parameters", "steps"), 2.5), "parameters.steps"),
    "steps-and-strength-run-nothing": (_set(("parameters", "steps"), 1), "parameters.steps"),
    "prompt-a-number": (_set(("parameters", "prompt"), 5), "parameters.prompt"),
    "task-unknown": (_set(("parameters", "task"), "outpaint"), "parameters.task"),
    "model-differs": (_set(("model",), "someone/else"), "model"),
    "model-blank": (_set(("model",), "  "), "model"),
    "extra-not-an-object": (_set(("parameters", "extra"), [1]), "parameters.extra"),
    "extra-key-not-a-name": (_set(("parameters", "extra", "not a name"), 1), "parameters.extra"),
    "input-role-unknown": (_set(("inputs", "thumbnail"), "inputs/t.png"), "inputs.thumbnail"),
    "input-name-a-number": (_set(("inputs", "mask"), 3), "inputs.mask"),
    "inputs-a-list": (_set(("inputs",), ["inputs/image.png"]), "inputs"),
    "input-size-huge": (_set(("input_size",), [100_000, 100_000]), "input_size"),
    "input-size-three": (_set(("input_size",), [64, 64, 3]), "input_size"),
    "twin-text": (_set(("twin",), "yes"), "twin"),
    "image-index-negative": (_set(("image_index",), -1), "image_index"),
    "prompt-weighting-text": (_set(("prompt_weighting",), "compel"), "prompt_weighting"),
    "nested-junk": (_set(("chain",), json.loads("[" * 40 + "]" * 40)), "chain" + "[0]" * 12),
    "format-a-bool": (_set(("nbinpaint_recipe",), True), "nbinpaint_recipe"),
    "format-zero": (_set(("nbinpaint_recipe",), 0), "nbinpaint_recipe"),
    "newer-format-versions-junk": (_merge({"nbinpaint_recipe": 2, "versions": [1]}), "nbinpaint_recipe"),
    "text-too-long": (_set(("note",), "x" * 1_000_001), "note"),
    "run-size-huge": (_set(("parameters", "width"), 2**20), "parameters.width"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_each_malformed_entry_is_a_recipe_error_naming_it(case):
    change, field = MALFORMED[case]
    recipe = change(clean_recipe())
    for call in (recipes.parse_recipe, recipes.request_from_recipe, codegen.code_for):
        with pytest.raises(RecipeError) as refused:
            call(recipe)
        assert refused.value.field == field
        assert f"{field!r}" in str(refused.value) or field == "nbinpaint_recipe"
        assert len(str(refused.value)) < 700


def png_with_text(path: Path, text: str) -> Path:
    info = PngInfo()
    info.add_text(recipes.RECIPE_KEY, text, zip=True)
    Image.new("RGB", (8, 8)).save(path, format="PNG", pnginfo=info)
    return path


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[1, 2]", "nbinpaint_recipe"),
        ('"a recipe"', "nbinpaint_recipe"),
        ("null", "nbinpaint_recipe"),
        ('{"nbinpaint_recipe": 1, "seed": ' + "9" * 5000 + "}", None),  # over Python's 4300 digits
        ('{"nbinpaint_recipe": 1, "seed": 1e999}', "seed"),
        ('{"nbinpaint_recipe": 1, "parameters": {"strength": NaN}}', "parameters.strength"),
        ('{"nbinpaint_recipe": 1, "x": ' + "[" * 50_000 + "]" * 50_000 + "}", None),  # deeper than json reads
        ('{"nbinpaint_recipe": 1, "x": ' + "[" * 100 + "]" * 100 + "}", "x" + "[0]" * 12),
        ('{"nbinpaint_recipe": 1, "parameters": {"prompt": "x"', None),
    ],
    ids=["list", "string", "null", "huge-int", "overflow", "nan", "too-deep-for-json", "too-deep", "cut"],
)
def test_any_json_text_is_a_recipe_error_naming_the_entry(tmp_path, text, field):
    path = png_with_text(tmp_path / "odd.png", text)
    with pytest.raises(RecipeError) as refused:
        recipes.load_recipe(path)
    assert refused.value.field == field
    assert str(path) in str(refused.value) and len(str(refused.value)) < 700


def test_a_10_mb_string_is_refused_quickly_with_its_length():
    recipe = clean_recipe()
    recipe["parameters"]["prompt"] = "x" * 10_000_000
    with pytest.raises(RecipeError, match=r"'parameters.prompt' must be at most 1,000,000 characters long") as refused:
        recipes.parse_recipe(recipe)
    assert len(str(refused.value)) < 400


@pytest.mark.parametrize("case", ["seed-a-list", "versions-a-list", "image-in-parameters", "nested-junk", "list"])
def test_history_load_skips_one_malformed_png_and_restores_the_others(case, results, capsys):
    notices.reset()
    good = clean_recipe()
    save_result(results, good, "00001-seed7.png")
    if case == "list":
        png_with_text(results / "00002-seed7.png", "[1, 2]")
        field = "nbinpaint_recipe"
    else:
        change, field = MALFORMED[case]
        save_result(results, change(good), "00002-seed7.png")
    save_result(results, {**good, "seed": 8, "parameters": {**good["parameters"], "seed": 8}}, "00003-seed8.png")
    history = History.load(results, autosave=False)
    assert [entry.id for entry in history] == ["00001-seed7", "00003-seed8"]
    assert [entry.request.seed for entry in history] == [7, 8]
    out = capsys.readouterr().out
    assert f"skipped 1 PNG(s) in {results} and restored 2: 00002-seed7.png (entry {field!r})" in out


# --------------------------------------------------------------------------------------------------------
# Properties: any JSON a PNG can carry, and a valid recipe changed one entry at a time.
# --------------------------------------------------------------------------------------------------------

# The entries nbinpaint writes (build_recipe, save_result, chains, sweeps, prompt weighting), and every
# request field, pixels included (a recipe holds none of them).
RECIPE_ENTRIES = (
    *clean_recipe(),
    *("image_index", "input_latents", "prompt_weighting", "chain", "sweep"),
)
REQUEST_FIELDS = [field.name for field in dataclasses.fields(InpaintRequest)]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(HOSTILE),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
known_entries = st.fixed_dictionaries(
    {"nbinpaint_recipe": st.sampled_from([1, 1, 1, 0, 2, True, "1"])},
    optional={
        **{key: json_values for key in RECIPE_ENTRIES if key not in ("parameters", "nbinpaint_recipe")},
        "parameters": st.dictionaries(st.sampled_from(REQUEST_FIELDS), json_values, max_size=6),
    },
)


def load_from_png(data: Any) -> tuple[dict | None, RecipeError | None]:
    buffer = io.BytesIO()
    png_with_text(buffer, json.dumps(data))  # NaN and Infinity as Python writes them
    buffer.seek(0)
    with Image.open(buffer) as image:
        try:
            return recipes.load_recipe(image), None
        except RecipeError as error:  # never any other exception
            refused = error
    assert str(refused)
    return None, refused


# A clean recipe with up to two of its entries replaced by any JSON.
clean_with_any_entries = st.builds(
    lambda base, changes: {**base, **changes},
    st.sampled_from(KINDS).map(clean_recipe),
    st.dictionaries(st.sampled_from(RECIPE_ENTRIES), json_values, max_size=2),
)


@SETTINGS
@given(data=json_values | known_entries | clean_with_any_entries)
def test_any_json_a_png_carries_loads_or_is_a_recipe_error(data):
    recipe, refused = load_from_png(data)
    event("refused" if refused else "loaded")
    if refused:
        return
    assert recipes.parse_recipe(recipe) == recipe  # parsed once, stable
    script, error = outcome(codegen.code_for, recipe)
    event(f"code_for: {type(error).__name__ if error else 'a script'}")
    if error is None:
        ast.parse(script)
        assert all(c.isprintable() or c == "\n" for c in script)


# Values a hostile author puts in place of a valid one: text that is no valid choice or backend id, and wrong
# types (containers, numbers beyond any range, NaN and infinities). None, booleans and small numbers are left
# out: they are valid somewhere and change what the script does (its shape) by design.
hostile_text = (st.sampled_from(HOSTILE) | st.text(max_size=30)).filter(
    lambda text: text not in TASKS + OUTPUT_TYPES and not text.startswith("classical/")
)
wrong_types = (
    st.lists(json_values, min_size=1, max_size=3)
    | st.dictionaries(st.text(max_size=6), json_values, min_size=1, max_size=3)
    | st.integers(2**64, 2**80)
    | st.integers(-(2**80), -(2**64))
    | st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308])
)


@SETTINGS
@given(kind=st.sampled_from(KINDS), data=st.data())
def test_a_recipe_changed_anywhere_loads_or_is_refused_and_adds_no_code(kind, data, clean_code):
    recipe = clean_recipe(kind)
    path = data.draw(st.sampled_from(leaf_paths(recipe)))
    value = data.draw(hostile_text | wrong_types)
    if isinstance(at(recipe, path[:-1]), dict) and data.draw(st.booleans()):
        path = (*path[:-1], data.draw(hostile_text))  # a new entry beside this one instead
    loaded, refused = load_from_png(replaced(recipe, path, value))
    event("refused" if refused else "loaded")
    if refused:
        return
    script, error = outcome(codegen.code_for, loaded)
    event(f"code_for: {type(error).__name__ if error else 'a script'}")
    if error is None:
        assert_same_code_shape(script, clean_code[kind])


def test_a_recipe_without_its_seed_gives_no_script():
    recipe = {**clean_recipe(), "seed": None}
    recipe["parameters"]["seed"] = None
    assert recipes.parse_recipe(recipe) == recipe  # a valid recipe of an unseeded request...
    with pytest.raises(RecipeError, match=r"names no seed \('seed' is null\)") as refused:
        codegen.code_for(recipe)  # ...but not one a script can reproduce
    assert refused.value.field == "seed"
