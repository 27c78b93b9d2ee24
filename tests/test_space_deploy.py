"""`arabic-prompts space deploy`. The remote Hub cannot be reached here (no network, and no installable local
server speaks the Hub API), so `FakeSpaceHub` (tests/fake_hub.py's FakeHub) stands in for the HTTP side of
`HfApi`, content-addressed like the real one (an upload of unchanged files makes no commit; huggingface_hub's
create_commit does the same). Everything up to that call -- the folder check, ignore patterns, repo type and sdk, endpoint and
token handling, the CLI -- runs for real."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fake_hub import FakeHub

from builders import cli, space_deploy
from builders.space_deploy import SpaceFolderError, deploy

SPACE = Path(__file__).resolve().parents[1] / "space"


class FakeSpaceHub(FakeHub):
    """tests/fake_hub.py's stand-in for the Hub (mock: no Hub is reachable here), with what Space repos add:
    the sdk given at creation, and Space variables."""

    def __init__(self, endpoint=None, token=None):
        super().__init__()
        self.endpoint, self.token, self.variables = endpoint, token, {}

    def create_repo(self, repo_id, repo_type=None, private=False, exist_ok=False, space_sdk=None):
        self.calls.append(("create_repo", repo_id, repo_type, space_sdk, private, exist_ok))

    def upload_folder(self, repo_id, repo_type, folder_path, ignore_patterns, commit_message, delete_patterns=()):
        return super().upload_folder(repo_id, repo_type, folder_path, ignore_patterns, list(delete_patterns),
                                     commit_message)

    def add_space_variable(self, repo_id, key, value):
        self.variables[key] = value


@pytest.fixture
def space_copy(tmp_path) -> Path:
    """space/ as a user's checkout has it after running the app: caches and Gradio's own folders beside it."""
    folder = tmp_path / "space"
    shutil.copytree(SPACE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (folder / ".gradio" / "flagged").mkdir(parents=True)
    (folder / ".gradio" / "flagged" / "log.csv").write_text("x")
    return folder


def test_deploy_uploads_the_space_and_is_idempotent(space_copy):
    hub = FakeSpaceHub()
    first = deploy("org/arabic-chat", folder=space_copy, api=hub)
    assert first.created_commit and first.commit == hub.commits[-1]
    assert hub.calls[0] == ("create_repo", "org/arabic-chat", "space", "gradio", False, True)
    assert {"app.py", "chat_engine.py", "requirements.txt", "README.md", "examples.json"} <= set(hub.files)
    assert not [p for p in hub.files if "__pycache__" in p or p.startswith(".gradio")]  # local leftovers stay
    assert first.url == "https://huggingface.co/spaces/org/arabic-chat"
    again = deploy("org/arabic-chat", folder=space_copy, api=hub)
    assert not again.created_commit and again.commit == first.commit and len(hub.commits) == 1
    (space_copy / "app.py").write_text((space_copy / "app.py").read_text() + "\n# changed\n")
    assert deploy("org/arabic-chat", folder=space_copy, api=hub).created_commit and len(hub.commits) == 2


def test_deploy_refuses_a_folder_that_is_not_a_gradio_space(space_copy):
    hub = FakeSpaceHub()
    readme = space_copy / "README.md"
    text = readme.read_text()
    readme.write_text(text.replace("sdk_version: 6.31.0", "sdk_version: 5.0.0"))
    with pytest.raises(SpaceFolderError, match="sdk_version 5.0.0 differs from requirements.txt's gradio==6.31.0"):
        deploy("org/x", folder=space_copy, api=hub)
    readme.write_text(text.replace("app_file: app.py", "app_file: main.py").replace("sdk: gradio", "sdk: docker"))
    with pytest.raises(SpaceFolderError, match=r"sdk is 'docker'.*app_file main.py does not exist"):
        deploy("org/x", folder=space_copy, api=hub)
    readme.write_text(text.split("---\n", 2)[2])
    with pytest.raises(SpaceFolderError, match="no YAML header"):
        deploy("org/x", folder=space_copy, api=hub)
    with pytest.raises(ValueError, match="ORG/NAME"):
        deploy("just-a-name", folder=SPACE, api=hub)
    assert hub.calls == [] and hub.commits == []  # nothing was sent


def test_deploy_honours_endpoint_and_token_and_never_prints_the_token(monkeypatch, capsys, space_copy):
    made = []

    def recording_api(endpoint=None, token=None):
        made.append(FakeSpaceHub(endpoint, token))
        return made[-1]

    import huggingface_hub

    secret = "hf_" + "VerySecretSpaceToken42"
    monkeypatch.setattr(huggingface_hub, "HfApi", recording_api)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_TOKEN", secret)
    res = deploy("org/chat", folder=space_copy, token=secret)
    assert (made[-1].endpoint, made[-1].token) == ("http://127.0.0.1:9", secret)
    assert res.url == "http://127.0.0.1:9/spaces/org/chat"
    # the CLI: --endpoint wins over HF_ENDPOINT; the token is left to huggingface_hub (HF_TOKEN or login cache)
    assert cli.main(["space", "deploy", "--repo", "org/chat", "--folder", str(space_copy), "--private",
                     "--endpoint", "http://localhost:1234", "--adapter", "org/adapter"]) == 0
    hub = made[-1]
    assert (hub.endpoint, hub.token) == ("http://localhost:1234", None)
    assert hub.calls[0][4] is True and hub.variables == {"ADAPTER": "org/adapter"}
    out = capsys.readouterr()
    assert "deployed" in out.out and "http://localhost:1234/spaces/org/chat (new commit" in out.out
    assert secret not in out.out + out.err


def test_cli_reports_an_unchanged_deploy_and_a_bad_folder(monkeypatch, capsys, space_copy, tmp_path):
    hub = FakeSpaceHub()
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", lambda endpoint=None, token=None: hub)
    args = ["space", "deploy", "--repo", "org/chat", "--folder", str(space_copy)]
    assert cli.main(args) == 0 and cli.main(args) == 0
    assert "no change, no new commit" in capsys.readouterr().out.splitlines()[-1]
    assert cli.main(["space", "deploy", "--repo", "org/chat", "--folder", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert space_deploy.SPACE_DIR == SPACE  # the default is this checkout's space/
