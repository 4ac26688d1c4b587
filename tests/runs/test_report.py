"""report.html: built from a synthetic run folder, self-contained, escaped, rendered by Chromium."""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from venomkit.runs.report import SECTION_TITLES, add_report_arguments, build_report, cli_report, diff_words

HR_KS = (5, 10, 20, 50)


def _png(path: Path, width: int, height: int, seed: int, noise: float = 0.0) -> None:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin((x + y) / 7.0)], axis=-1)
    img = np.clip(img + noise * rng.uniform(-1, 1, img.shape), 0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img * 255).astype(np.uint8), "RGB").save(path)


def _hr_row(before: float, gain: float) -> dict[str, float]:
    row = {}
    for k in HR_KS:
        row[f"hr@{k}_before"] = before * k / 50
        row[f"hr@{k}_after"] = (before + gain) * k / 50
    row["ri@50"] = gain / before if before else float("inf")
    return row


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


TEXTS = [
    ("it10", "a red cotton shirt", "a blue cotton shirt"),
    ("it11", "plain wool scarf <script>alert(1)</script> & co", "striped wool scarf <script>alert(1)</script> & co"),
    ("it12", "soft leather boots for winter", "soft boots for the cold winter"),
]


def make_run(root: Path, *, full: bool = True) -> Path:
    """A small run folder: two image settings x 3 targets (64 px squares; 300 x 450 photos), a
    text setting with texts.csv, and (``full``) run.json, summary.json, victims, table.csv."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    image_settings = [("vbpr", "vbpr", "none", "pgd", (64, 64)), ("vbpr-uatmc", "vbpr", "uat_mc", "fgsm", (300, 450))]
    for s, (victim, backbone, defense, attack, (w, h)) in enumerate(image_settings if full else []):
        for t in range(3):
            item = f"it{t}"
            clean, adv = f"images/{victim}/{attack}/{item}_clean.png", f"images/{victim}/{attack}/{item}_adv.png"
            _png(root / clean, w, h, seed=t)
            _png(root / adv, w, h, seed=100 + t + s, noise=0.03)
            rows.append(
                {"victim": victim, "backbone": backbone, "defense": defense, "attack": attack, "item_id": item, "item_index": t,
                 "popularity": 2 + t, **_hr_row(0.002 * t, 0.01 + 0.02 * t), "mean_rank_before": 900 - t, "mean_rank_after": 600 - 50 * t,
                 "n_users": 500, "ssim": 0.9 - 0.05 * t - 0.1 * s, "psnr": 38 - t, "linf": 8 / 255, "l2": 1.5,
                 "clip_image_sim": 0.95 - 0.01 * t, "text_sim": "", "diag_steps": 10, "clean_image": clean, "adv_image": adv}
            )
    for t, (item, _, _) in enumerate(TEXTS):
        rows.append(
            {"victim": "vbpr", "backbone": "vbpr", "defense": "none", "attack": "hotflip", "item_id": item, "item_index": 10 + t,
             "popularity": 1, **_hr_row(0.001, 0.05 * (t + 1)), "mean_rank_before": 950, "mean_rank_after": 400,
             "n_users": 500, "ssim": "", "psnr": "", "text_sim": 0.8 - 0.1 * t, "text_edit_ratio": 0.25, "clean_image": "", "adv_image": ""}
        )
    _write_csv(root / "results.csv", rows)
    _write_csv(root / "texts.csv", [{"victim": "vbpr", "attack": "hotflip", "item_id": i, "original": o, "adversarial": a} for i, o, a in TEXTS])
    if not full:
        return root
    resolved = {
        "name": "report-fixture", "description": "two image settings and a text setting <b>escaped</b>",
        "data": {"name": "toyshop", "n_users": 500}, "victims": {"vbpr": {"kind": "vbpr"}}, "defenses": {"uat_mc": {"eps": 0.5}},
        "attacks": {"pgd": {"eps": "8/255"}, "fgsm": {}, "hotflip": {}}, "targets": {"n": 3}, "seed": 0,
        "metrics": ["ranking", "stealth"], "outputs": {"images": True}, "shop_transform": None, "device": "cpu",
    }
    (root / "run.json").write_text(json.dumps({
        "format": "venomkit-run", "format_version": 1, "venomkit_version": "0.1.0", "fingerprint": {"recipe": "abc123"},
        "resolved": resolved, "num_processes": 2, "started": "2025-01-02T03:04:05",
    }))
    settings = []
    for victim, backbone, defense, attack in [("vbpr", "vbpr", "none", "pgd"), ("vbpr-uatmc", "vbpr", "uat_mc", "fgsm"), ("vbpr", "vbpr", "none", "hotflip")]:
        mine = [r for r in rows if r["victim"] == victim and r["attack"] == attack]
        means = {k: float(np.mean([float(r[k]) for r in mine if r.get(k, "") != ""])) for k in ("hr@50_before", "hr@50_after", "hr@10_before", "hr@10_after")}
        settings.append({"victim": victim, "backbone": backbone, "defense": defense, "attack": attack, "n_targets": len(mine),
                         "means": means, "ri@50_of_means": means["hr@50_after"] / means["hr@50_before"] - 1})
    (root / "summary.json").write_text(json.dumps({
        "name": "report-fixture", "n_rows": len(rows), "settings": settings,
        "victims": {"vbpr": {"kind": "vbpr", "defense": "none", "test": {"recall@20": 0.6, "ndcg@20": 0.42}}},
        "skipped": [{"victim": "lightgcn", "attack": "pgd", "reason": "ID-only victim: no content to perturb"}],
        "seconds": 123.4, "num_processes": 2,
    }))
    for name, method, epochs in (("vbpr", None, 8), ("vbpr-uatmc", "uat_mc", 4)):
        history = [{"epoch": e + 1, "loss": 0.7 / (e + 1), "seconds": 1.0, "valid_recall@20": 0.3 + 0.03 * e} for e in range(epochs)]
        record = {"kind": "vbpr", "test": {"recall@20": 0.6, "ndcg@20": 0.4}, "cold": {"recall@20": 0.05},
                  "train": {"best_epoch": epochs - 1, "history": history}}
        if method:
            record["method"] = method
        (root / "victims" / name).mkdir(parents=True)
        (root / "victims" / name / "metrics.json").write_text(json.dumps(record))
    table = []
    for defense in ("w/o AT", "UAT", "UAT-MC"):
        for attack in ("pgd", "hotflip"):
            table.append({"dataset": "toyshop", "backbone": "vbpr", "defense": defense, "attack": attack, "hr@50_before": 0.005,
                          "hr@50_after": 0.05, "ri@50": 9.0 if defense == "w/o AT" else (float("inf") if attack == "hotflip" else 3.0),
                          "shift_visual": 0.1, "shift_text": 0.2, "recall@20": 0.6, "ndcg@20": 0.42, "ndcg@20_rel_change": -0.01})
    _write_csv(root / "table.csv", table)
    return root


def _img_srcs(page: str) -> list[str]:
    return re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)


def test_report_has_every_section_and_is_self_contained(tmp_path):
    run = make_run(tmp_path / "run")
    path = build_report(run, max_targets=2)
    assert path == run / "report.html" and path.is_file()
    assert not list(run.glob(".report.*")), "the temporary file was left behind"
    page = path.read_text()
    for title in SECTION_TITLES.values():
        assert f">{title}</h2>" in page
    for heading in ("(a) HR@50 per target", "(b) Stealth vs success", "(c) Victims' training curves", "(d) Judgement: RI@50", "Judgement (w/o AT vs UAT vs UAT-MC)"):
        assert heading in page
    assert "report-fixture" in page and "&lt;b&gt;escaped&lt;/b&gt;" in page
    assert "could not be built" not in page and "unreadable" not in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I), "remote resource referenced"
    assert "<script" not in page and "@import" not in page and "url(" not in page
    srcs = _img_srcs(page)
    # 4 plots (a) + (b) + (c) + (d): 3 HR charts, then 2 settings x 2 targets x 3 images
    assert len(srcs) == 3 + 3 + 2 * 2 * 3
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True))) as im:
            im.load()
            assert im.width > 0 and im.height > 0
    # big photos are thumbnailed to a longest side of 256, keeping the aspect ratio; small ones are shown pixelated
    sizes = [Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))).size for s in srcs[-12:]]
    assert (64, 64) in sizes and (171, 256) in sizes
    assert page.count('class="cell pixelated"') == 2 * 3
    assert page.count("amplified difference (x10)") >= 2 * 2
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == [], "a matplotlib figure was left open"


def test_difference_image_is_amplified_and_centred(tmp_path):
    from venomkit.runs.report import image_triplet

    clean, adv = tmp_path / "c.png", tmp_path / "a.png"
    base = np.full((8, 12, 3), 100, np.uint8)
    Image.fromarray(base).save(clean)
    changed = base.copy()
    changed[0, 0, 0] = 105  # +5/255 -> 0.5 + 50/255
    Image.fromarray(changed).save(adv)
    (_, _, (png, size)), note = image_triplet(clean, adv)
    diff = np.asarray(Image.open(io.BytesIO(png)))
    assert size == (12, 8) and note == "12×8 px"
    assert diff[1, 1, 0] == 128 and diff[0, 0, 0] == round((0.5 + 50 / 255) * 255)


def test_difference_of_a_large_photo_keeps_high_frequency_changes_visible(tmp_path):
    from venomkit.runs.report import image_triplet

    clean, adv = tmp_path / "c.png", tmp_path / "a.png"
    base = np.full((600, 400, 3), 120, np.uint8)
    Image.fromarray(base).save(clean)
    checker = np.where((np.add.outer(np.arange(600), np.arange(400)) % 2)[..., None], 8, -8)  # +-8/255, averages to 0
    Image.fromarray((base + checker).astype(np.uint8)).save(adv)
    ((_, clean_size), (_, adv_size), (png, diff_size)), note = image_triplet(clean, adv)
    assert clean_size == adv_size == (171, 256) and max(diff_size) <= 256
    assert "3×3 block" in note
    diff = np.asarray(Image.open(io.BytesIO(png))).astype(int)
    assert np.abs(diff - 128).min() >= 70  # every block shows a change of 10 x 8/255, not grey


def test_text_only_folder_with_just_results_csv_builds(tmp_path):
    run = make_run(tmp_path / "textonly", full=False)
    (run / "texts.csv").unlink()
    page = build_report(run).read_text()
    for title in SECTION_TITLES.values():
        assert f">{title}</h2>" in page
    assert "No adversarial images in this run" in page
    assert "No training history" in page and "No judgement" in page
    assert "vbpr · hotflip" in page


def test_folder_with_broken_and_missing_files_still_builds(tmp_path):
    run = make_run(tmp_path / "broken")
    (run / "summary.json").write_text("{not json")
    (run / "images" / "vbpr" / "pgd" / "it0_adv.png").unlink()
    (run / "images" / "vbpr" / "pgd" / "it1_adv.png").write_bytes(b"not a png")
    (run / "victims" / "vbpr" / "metrics.json").write_text(json.dumps({"kind": "vbpr", "test": {}}))  # from a checkpoint: no history
    (run / "table.csv").write_text("backbone,defense,attack,ri@50\nvbpr,UAT,pgd,inf\nvbpr,UAT-MC,pgd,\n")  # columns missing
    with (run / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    # an image path leaving the run folder is not read
    rows.append({**rows[0], "item_id": "it9", "clean_image": "../../../etc/hostname", "adv_image": "/etc/hostname"})
    _write_csv(run / "results.csv", rows)
    page = build_report(run).read_text()
    assert "summary.json: unreadable" in page
    assert "adversarial image missing" in page and "unreadable image" in page
    assert "clean and adversarial image missing (../../../etc/hostname, /etc/hostname)" in page
    assert "could not be built" not in page


def test_text_diff_marks_exactly_the_changed_words():
    left, right = diff_words("a red cotton shirt", "a blue cotton shirt")
    assert left == "a <del>red</del> cotton shirt"
    assert right == "a <ins>blue</ins> cotton shirt"
    left, right = diff_words("soft leather boots for winter", "soft boots for the cold winter")
    assert re.findall(r"<del>(.*?)</del>", left) == ["leather"]
    assert re.findall(r"<ins>(.*?)</ins>", right) == ["the cold"]


def test_texts_are_html_escaped(tmp_path):
    run = make_run(tmp_path / "run", full=False)
    page = build_report(run).read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&amp; co" in page
    assert "a <del>red</del> cotton shirt" in page and "a <ins>blue</ins> cotton shirt" in page


def test_cli_errors_name_the_folder(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_report_arguments(parser)
    missing = tmp_path / "nope"
    with pytest.raises(ValueError) as err:
        cli_report(parser.parse_args([str(missing)]))
    assert str(missing) in str(err.value) and "does not exist" in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither run.json nor results.csv"):
        cli_report(parser.parse_args([str(tmp_path / "empty")]))
    run = make_run(tmp_path / "run", full=False)
    assert cli_report(parser.parse_args([str(run), "--max-targets", "1"])) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chromium-headless-shell"):
        if path := shutil.which(name):
            return path
    return None


def test_chromium_renders_the_report(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium: install the Debian package chromium (.ci/run does)")
    page = build_report(make_run(tmp_path / "run"))
    shot = tmp_path / "shot.png"
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
        page.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert shot.is_file(), f"Chromium wrote no screenshot (rc {proc.returncode}): {proc.stderr[-2000:]}"
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape[:2] == (2000, 1280)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    assert (pixels.min(axis=2) < 230).mean() > 0.01
