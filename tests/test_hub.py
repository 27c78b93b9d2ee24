"""Validate and publish. The remote Hub cannot exist here (no network, and no installable local server speaks
the Hub API: pip's `hf-local-hub` needs a Go binary it does not ship), so `FakeHub` (tests/fake_hub.py) stands in
for the HTTP side of `HfApi`; everything up to that call -- validation, ignore patterns, versions, tags, idempotency,
endpoint and token handling -- runs for real."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from builders import hub
from builders.hub import ValidationError, publish, validate
from builders.pipeline import BuildConfig, build
from fake_hub import FakeHub
from test_build import make_toy


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hub")
    cat, data = make_toy(root, [("جملة جيدة", "pos"), ("جملة سيئة", "neg"), ("ثالثة", "pos")], [("اختبار", "neg")])
    out = root / "out"
    build(BuildConfig(out=out, datasets=["toy_sentiment"], local={"toy_sentiment": str(data)},
                      catalog_dirs=[str(cat)], workers=1))
    return out


def test_validate_accepts_a_build(built):
    summary = validate(built)
    rows = sum(len(pq.read_table(p)) for p in (built / "data").rglob("*.parquet"))
    assert (summary["configs"], summary["rows"]) == (1, rows)
    checks = summary["checks"]
    assert checks["rows"] == rows and checks["duplicate_ids"] == 0
    assert checks["source_texts"] == 4 and checks["source_texts_in_two_splits"] == 0
    assert checks["inputs_checked"] == rows and checks["inputs_in_two_splits"] == 0


def test_validate_refuses_tampered_folders(built, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(built, bad)
    manifest = json.loads((bad / "build_manifest.json").read_text())
    manifest["counts"]["by_config_split"]["toy_sentiment"]["train"] += 1
    (bad / "build_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValidationError, match="do not match build_manifest"):
        validate(bad)
    shutil.rmtree(bad)
    shutil.copytree(built, bad)
    next((bad / "data").rglob("test-*.parquet")).unlink()
    with pytest.raises(ValidationError, match="split 'test': no file matches"):
        validate(bad)
    (bad / "README.md").unlink()
    with pytest.raises(ValidationError, match="README.md: missing"):
        validate(bad)


def test_publish_uploads_tags_and_is_idempotent(built):
    fake = FakeHub()
    first = publish(built, "org/arabic-prompts", "1.0.0", api=fake)
    assert first.created_commit and first.created_tag and fake.tags == {"v1.0.0": first.commit}
    assert not any(p.startswith("_build") for p in fake.files)  # work files are never uploaded
    assert {"README.md", "build_manifest.json", "build_report.json"} <= set(fake.files)
    assert any(p.startswith("data/toy_sentiment/train-") for p in fake.files)
    again = publish(built, "org/arabic-prompts", "1.0.0", api=fake)
    assert not again.created_commit and not again.created_tag and again.commit == first.commit
    assert len(fake.commits) == 1


def test_publish_refuses_to_move_a_tag_and_invalid_input(built, tmp_path):
    import shutil

    fake = FakeHub()
    publish(built, "org/x", "1.0.0", api=fake)
    changed = tmp_path / "changed"
    shutil.copytree(built, changed)
    (changed / "README.md").write_text((changed / "README.md").read_text() + "\nmore\n")
    commits, calls = list(fake.commits), len(fake.calls)
    with pytest.raises(ValueError, match="Bump --version"):
        publish(changed, "org/x", "1.0.0", api=fake)
    # refused before anything was sent: no upload, no commit, the tag where it was
    assert fake.commits == commits and fake.tags == {"v1.0.0": commits[0]}
    assert [c[0] for c in fake.calls[calls:]] == ["create_repo"]
    assert publish(changed, "org/x", "1.0.1", api=fake).created_tag
    with pytest.raises(ValueError, match="1.2.3"):
        publish(built, "org/x", "v1", api=fake)
    (changed / "build_manifest.json").unlink()
    calls = len(fake.calls)
    with pytest.raises(ValidationError):
        publish(changed, "org/x", "1.0.2", api=fake)
    assert len(fake.calls) == calls  # nothing was sent for an invalid folder


def test_republishing_an_old_version_changes_nothing(built, tmp_path):
    """v1.0.0 again after v1.0.1: the same content as its tag, so no upload (main keeps v1.0.1)."""
    import shutil

    fake = FakeHub()
    first = publish(built, "org/x", "1.0.0", api=fake)
    newer = tmp_path / "newer"
    shutil.copytree(built, newer)
    (newer / "README.md").write_text((newer / "README.md").read_text() + "\nnewer\n")
    publish(newer, "org/x", "1.0.1", api=fake)
    head = fake.commits[-1]
    again = publish(built, "org/x", "1.0.0", api=fake)
    assert not again.created_commit and not again.created_tag and again.commit == first.commit
    assert fake.commits[-1] == head and fake.calls[-1][0] == "create_repo"


def test_publish_honours_endpoint_and_never_prints_the_token(built, monkeypatch, capsys):
    seen = {}

    class RecordingApi(FakeHub):
        def __init__(self, endpoint=None, token=None):
            super().__init__()
            seen.update(endpoint=endpoint, token=token)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    publish(built, "org/x", "2.0.0", token="hf_very_secret_token")
    assert seen == {"endpoint": "http://127.0.0.1:9", "token": "hf_very_secret_token"}
    publish(built, "org/y", "2.0.0", endpoint="http://localhost:1234")
    assert seen["endpoint"] == "http://localhost:1234" and seen["token"] is None  # None: env or login cache
    out = capsys.readouterr()
    assert "hf_very_secret_token" not in out.out + out.err


def test_config_files_and_load_built_resolve_card_patterns(built):
    files = hub.config_files(built, "default")
    assert set(files) == {"train", "validation", "test"} or set(files) <= {"train", "validation", "test"}
    ds = hub.load_built(built, "toy_sentiment")
    assert sum(len(v) for v in ds.values()) == sum(len(pq.read_table(p)) for p in (built / "data").rglob("*.parquet"))
    with pytest.raises(ValidationError, match="no config 'nope'"):
        hub.config_files(built, "nope")


def test_publish_stamps_repo_and_version_into_the_card_snippet(built, tmp_path):
    import shutil

    folder = tmp_path / "stamp"
    shutil.copytree(built, folder)
    assert 'load_dataset("my-org/my-prompts"' not in (folder / "README.md").read_text()
    publish(folder, "my-org/my-prompts", "2.1.0", api=FakeHub())
    card = (folder / "README.md").read_text()
    assert 'load_dataset("my-org/my-prompts", "toy_sentiment", revision="v2.1.0")' in card
    assert 'load_dataset("my-org/my-prompts", "default", revision="v2.1.0")' in card
