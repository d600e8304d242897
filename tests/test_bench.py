"""The benchmark runner: rows, baselines, ratios and the JSON copy (figures themselves are not asserted)."""

from __future__ import annotations

import json

from nbinpaint import bench


def test_paired_times_both_paths_alternately():
    calls: list[str] = []
    measured = bench.paired(lambda: calls.append("ours"), lambda: calls.append("base"), 4)
    assert len(measured.samples) == len(measured.baseline) == 4
    # one warm-up each, then B A, A B, B A, A B: neither path always runs first
    assert calls[2:] == ["base", "ours", "ours", "base", "base", "ours", "ours", "base"]


def test_run_rows_reports_ratio_figures_skips_and_errors(capsys):
    def slow(repeat):
        return bench.Measured([0.002] * repeat, baseline=[0.001] * repeat, figures={"bytes": 0, "ok": True})

    def skipped(repeat):
        raise bench.Skip("needs CUDA")

    def broken(repeat):
        raise RuntimeError("boom")

    rows = [
        bench.Row("slow", "twice the baseline", "", slow, "test"),
        bench.Row("skipped", "", "", skipped, "test"),
        bench.Row("broken", "", "", broken, "test"),
    ]
    results = bench.run_rows(rows, 3)
    assert abs(results[0]["ratio"] - 2.0) < 1e-9
    assert results[0]["figures"] == {"bytes": 0, "ok": True}
    assert results[1]["skipped"] == "needs CUDA"
    assert results[2]["error"] == "RuntimeError: boom"
    out = capsys.readouterr().out
    assert "needs CUDA" in out and "ERROR" in out and "ok: True" in out


def test_main_writes_json_for_cheap_rows(tmp_path):
    target = tmp_path / "bench.json"
    assert bench.main(["--only", "stroke_500pt_1024", "feather_1024_bf33", "--repeat", "3", "--json", str(target)]) == 0
    data = json.loads(target.read_text())
    assert [r["name"] for r in data["rows"]] == ["stroke_500pt_1024", "feather_1024_bf33"]
    assert all(r["n"] == 3 and r["median_ms"] > 0 for r in data["rows"])
    assert data["meta"]["repeat"] == 3


def test_every_row_has_a_unique_name_and_a_description():
    bench._load_rows()
    names = [r.name for r in bench.ROWS]
    assert len(names) == len(set(names))
    assert all(r.what for r in bench.ROWS)


def test_seams_bench_prints_delta_e_for_each_repair_and_match_halves_it(capsys, tmp_path):
    from nbinpaint.bench import seams

    target = tmp_path / "seams.json"
    assert seams.main(["--no-twin", "--json", str(target)]) == 0  # exits 1 when match does not halve ΔE
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in ("none", "match", "poisson", "overlay"))
    data = json.loads(target.read_text())
    known = data["cases"]["known_shift"]
    assert known["none"]["delta_e"] > 5 and data["match_ratio"] <= 0.5
    assert f"match ratio {data['match_ratio']:.3f}: at least halved" in out


def test_seams_row_is_listed_with_its_figures(tmp_path):
    target = tmp_path / "bench.json"
    assert bench.main(["--only", "seams", "--repeat", "2", "--json", str(target)]) == 0
    (entry,) = json.loads(target.read_text())["rows"]
    assert entry["name"] == "seam_repair_known_shift" and entry["n"] == 2
    assert entry["figures"]["match_ratio"] <= 0.5 and entry["figures"]["delta_e_none"] > 5
