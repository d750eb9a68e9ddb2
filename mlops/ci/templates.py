"""CI templates: ``mlops ci init --github-actions`` writes ``.github/workflows/mlops.yml``.

Three jobs: ``test`` (install and run the project's tests), ``train`` (run the training
command, keep the model and test set as an artifact) and ``pipeline`` (``mlops ci run``
with the policy; the JSON, Markdown and JUnit reports are uploaded, the JUnit file shows
every gate as a test, and the Markdown becomes the job summary). Edit the ``env`` block.
"""

from __future__ import annotations

from pathlib import Path

from mlops.errors import CIError

__all__ = ["GITHUB_ACTIONS", "write_github_actions"]

GITHUB_ACTIONS = """\
# Written by `mlops ci init --github-actions`. Edit the env block for your project.
name: mlops

on:
  push:
    branches: [main]
  pull_request:

env:
  PYTHON_VERSION: "3.11"
  MODEL_NAME: my_model
  MODEL_PATH: models/model.skops
  TEST_DATA: data/test.csv
  TRAIN_COMMAND: python train.py
  POLICY_FILE: mlops-policy.yaml

jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: ${{ env.PYTHON_VERSION }}
      - name: Install
        run: pip install -e . mlops
      - name: Test
        run: python -m pytest -q

  train:
    runs-on: ubuntu-latest
    needs: test
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: ${{ env.PYTHON_VERSION }}
      - name: Install
        run: pip install -e . mlops
      - name: Train
        run: ${{ env.TRAIN_COMMAND }}
      - uses: actions/upload-artifact@v4
        with:
          name: model
          path: |
            ${{ env.MODEL_PATH }}
            ${{ env.TEST_DATA }}

  pipeline:
    runs-on: ubuntu-latest
    needs: train
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: ${{ env.PYTHON_VERSION }}
      - name: Install
        run: pip install mlops
      - uses: actions/download-artifact@v4
        with:
          name: model
      - name: Quality gates, registration, staging tests
        env:
          MLOPS_DATABASE_URL: ${{ secrets.MLOPS_DATABASE_URL }}
          MLOPS_ARTIFACTS_URI: ${{ secrets.MLOPS_ARTIFACTS_URI }}
        run: >
          mlops ci run --model-path "$MODEL_PATH" --name "$MODEL_NAME"
          --test-data "$TEST_DATA" --policy "$POLICY_FILE"
          --stage ${{ github.event_name == 'pull_request' && 'gates' || 'staging' }}
          --report-dir mlops-reports
      - name: Job summary
        if: always()
        run: cat mlops-reports/report.md >> "$GITHUB_STEP_SUMMARY" || true
      - uses: actions/upload-artifact@v4
        if: always()
        with:
          name: mlops-reports
          path: mlops-reports/
"""


def write_github_actions(root: Path, *, force: bool = False) -> Path:
    """Write the workflow under ``root``; refuses to overwrite unless ``force``."""
    path = root / ".github" / "workflows" / "mlops.yml"
    if path.exists() and not force:
        raise CIError(f"{path} exists.", fix="Pass --force to overwrite it.", path=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(GITHUB_ACTIONS, encoding="utf-8")
    return path
