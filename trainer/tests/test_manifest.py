"""model.json validation: the service's JSON Schema (models/manifest.schema.json, generated from its zod schema),
the trainer's additions, checksums and cross-field checks. Runs on copies of the committed default model."""
import json
import os
import shutil

import pytest

from conftest import REPO
from reward_trainer.manifest import ManifestError, validate_manifest

DEFAULT_MODEL = os.path.join(REPO, "models", "ixc-reward-tiny", "1")


def edited_copy(tmp_path, edit):
    """The default model with its large files linked and model.json changed by `edit`."""
    d = tmp_path / "1"
    d.mkdir(parents=True)
    for name in os.listdir(DEFAULT_MODEL):
        if name != "model.json":
            os.symlink(os.path.join(DEFAULT_MODEL, name), d / name)
    with open(os.path.join(DEFAULT_MODEL, "model.json"), encoding="utf-8") as f:
        m = json.load(f)
    edit(m)
    (d / "model.json").write_text(json.dumps(m), encoding="utf-8")
    return str(d)


def test_committed_default_model_is_valid():
    assert validate_manifest(DEFAULT_MODEL)["name"] == "ixc-reward-tiny"


def test_rejects_what_the_service_schema_rejects(tmp_path):
    def edit(m):
        m["name"] = "bad name"  # the service's name pattern
        m["truncation"]["side"] = "right"  # the service truncates left only
        m["files"]["golden.json"]["sha256"] = "ABC"

    with pytest.raises(ManifestError) as e:
        validate_manifest(edited_copy(tmp_path, edit))
    for path in ("name:", "truncation.side:", "files.golden.json.sha256:"):
        assert path in str(e.value)


def test_rejects_missing_trainer_evidence(tmp_path):
    with pytest.raises(ManifestError, match=r"producer: 'git_commit' is a required property"):
        validate_manifest(edited_copy(tmp_path, lambda m: m["producer"].pop("git_commit")))
    with pytest.raises(ManifestError, match=r"evaluation.heldout: 'pairs' is a required property"):
        validate_manifest(edited_copy(tmp_path / "b", lambda m: m["evaluation"]["heldout"].pop("pairs")))


def test_rejects_disagreeing_fields_and_tampered_files(tmp_path):
    with pytest.raises(ManifestError, match="template prefix/suffix ids"):
        validate_manifest(edited_copy(tmp_path, lambda m: m["template"].update(prefix_ids=[7])))
    d = tmp_path / "tampered"
    shutil.copytree(DEFAULT_MODEL, d)
    with open(d / "tokenizer.json", "a") as f:
        f.write(" ")
    with pytest.raises(ManifestError, match="tokenizer.json: checksum"):
        validate_manifest(str(d))


def test_published_video_layout_needs_its_font_file(tmp_path):
    """layout "published": label_font is {file, size} naming a checksummed model file; the writer's section and
    file list validate, a missing or unlisted font does not, and the ixc_stack rules (label_scale) do not apply."""
    from reward_trainer import media
    from reward_trainer.config import VideoPreprocess
    from reward_trainer.manifest import file_digest, model_files, video_section

    vcfg = VideoPreprocess.published()
    assert model_files(vcfg) == {"label-font.ttf": media.LABEL_FONT} and model_files(VideoPreprocess()) == {}

    def edit(m):
        m["preprocess"]["video"] = video_section(vcfg)
        m["files"]["label-font.ttf"] = file_digest(media.LABEL_FONT)

    d = edited_copy(tmp_path, edit)
    with pytest.raises(ManifestError, match="label-font.ttf listed but missing"):
        validate_manifest(d)
    shutil.copyfile(media.LABEL_FONT, os.path.join(d, "label-font.ttf"))
    m = validate_manifest(d)
    assert m["preprocess"]["video"] == {"fps": 1, "max_frames": 32, "frame_long_side": 1120, "layout": "published",
                                        "header_height": 40, "gap": 10, "line_width": 2,
                                        "label_font": {"file": "label-font.ttf", "size": 40}}
    with pytest.raises(ManifestError, match="label_font"):
        validate_manifest(edited_copy(tmp_path / "b", lambda m: (edit(m), m["preprocess"]["video"]["label_font"].pop("size"))))
    with pytest.raises(ManifestError, match="label_scale"):
        validate_manifest(edited_copy(tmp_path / "c", lambda m: m["preprocess"]["video"].pop("label_scale")))
    # published layout whose font is not one of `files` (so nothing checksums it)
    with pytest.raises(ManifestError, match="label_font.file 'label-font.ttf' not listed in files"):
        validate_manifest(edited_copy(tmp_path / "d", lambda m: m["preprocess"].__setitem__("video", video_section(vcfg))))
