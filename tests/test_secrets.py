"""The one credential rule (orchestrator.study.secrets), and that result rows and tracker
parameters both go through it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.run.trackers import tracked_params
from orchestrator.store.rows import TrialOutcome, trial_record
from orchestrator.study.secrets import has_secret, is_secret_key, redact
from orchestrator.study.trials import TrialJob
from pose_core.config import TrialConfig, with_values

SECRETS = {  # text -> the secret in it
    "WANDB_API_KEY=abc123": "abc123",
    "HF_TOKEN=hf_AbCdEf0123": "hf_AbCdEf0123",
    "MLFLOW_TRACKING_PASSWORD: hunter2": "hunter2",
    "export OPENAI_API_KEY='sk-proj-xyz'": "sk-proj-xyz",
    "PRIVATE_KEY=MIIEvQIBADANBg": "MIIEvQIBADANBg",
    "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI": "wJalrXUtnFEMI",
    '{"password": "p4ss"}': "p4ss",
    "could not reach s3://alice:hunter2@minio:9000/bucket": "hunter2",
    "https://bob:s3cr3t@mlflow.example.org/api": "s3cr3t",
    "key id AKIAABCDEFGHIJKLMNOP was refused": "AKIAABCDEFGHIJKLMNOP",
    "temporary ASIAABCDEFGHIJKLMNOP expired": "ASIAABCDEFGHIJKLMNOP",
    "401 with Authorization: Bearer eyJhbGciOi.x.y": "eyJhbGciOi.x.y",
}

ORDINARY = [
    "ValueError: lr=0.1 epoch: 3 loss is nan",
    "FileNotFoundError: /data/lynx/annotations/train.json (no such file)",
    "s3://bucket/results/trials/part-0.parquet",
    "https://example.org/weights/hrnet_w32.pth",
    "CUDA out of memory. Tried to allocate 2.00 GiB; author of the dataset: the study",
    "keypoint names: nose, left_eye, right_eye",
]


@pytest.mark.parametrize("text", sorted(SECRETS))
def test_secrets_are_redacted(text: str) -> None:
    out = redact(text)
    assert SECRETS[text] not in out and "<redacted>" in out, out
    assert has_secret(text) and not has_secret(out) and redact(out) == out


def test_the_key_name_stays_readable() -> None:
    assert redact("failed: WANDB_API_KEY=abc123 lr=0.1") == "failed: WANDB_API_KEY=<redacted> lr=0.1"
    assert redact('db_password: hunter2, "token": "t"') == 'db_password: <redacted>, "token": "<redacted>"'


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_kept(text: str) -> None:
    assert redact(text) == text and not has_secret(text)


def test_secret_key_names() -> None:
    for name in ("WANDB_API_KEY", "HF_TOKEN", "MLFLOW_TRACKING_PASSWORD", "ANY_API_KEY",
                 "PRIVATE_KEY", "aws_secret_access_key", "storage_options.secret",
                 "BASIC_AUTH", "Authorization"):
        assert is_secret_key(name), name
    for name in ("train.lr", "data.test", "model.weights", "variant_id", "author", "keypoints"):
        assert not is_secret_key(name), name


def test_rows_and_tracker_params_share_the_rule() -> None:
    error = "RuntimeError: login failed with WANDB_API_KEY=abc123 HF_TOKEN=hf_x"
    cfg = with_values(TrialConfig(), {"train.epochs": 1,
                                      "model.weights": "s3://alice:hunter2@host/w.pth"})
    job = TrialJob("exp", "main", "v", 0, cfg)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    row = trial_record("exp", TrialOutcome(job=job, trial_id="t", reports=[], started_at=t0,
                                           ended_at=t0, error=error))
    assert row.status == "failed" and row.error == redact(error)
    assert "abc123" not in (row.error or "") and "hf_x" not in (row.error or "")
    params = tracked_params({"job": job})
    assert "model.weights" not in params and params["train.epochs"] == 1
    params = tracked_params({"env": {"WANDB_API_KEY": "abc123", "MLFLOW_TRACKING_URI": "file:/m"},
                             "note": error, "lr": 0.1})
    assert params == {"env.MLFLOW_TRACKING_URI": "file:/m", "lr": 0.1}
