"""Settings: MAMORU_* variables, then the TOML file named by MAMORU_CONFIG, then defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from store.config import Settings, load_settings

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("MAMORU_"):
            monkeypatch.delenv(key)


def test_defaults_need_no_configuration() -> None:
    settings = load_settings()
    assert settings.database_url is None
    assert settings.max_image_pixels == 50_000_000
    assert settings.data_dir.name == "mamoru"


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAMORU_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MAMORU_MAX_IMAGE_PIXELS", "1234")
    monkeypatch.setenv("MAMORU_DATABASE_URL", "postgresql://u@db.example/mamoru")
    settings = load_settings()
    assert settings.data_dir == tmp_path
    assert settings.max_image_pixels == 1234
    assert settings.database_url == "postgresql://u@db.example/mamoru"


def test_toml_file_and_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "mamoru.toml"
    config.write_text('pdf_dpi = 200\nlog_level = "debug"\nmax_image_pixels = 99\n')
    monkeypatch.setenv("MAMORU_CONFIG", str(config))
    monkeypatch.setenv("MAMORU_MAX_IMAGE_PIXELS", "77")
    settings = load_settings()
    assert settings.pdf_dpi == 200
    assert settings.log_level == "DEBUG"
    assert settings.max_image_pixels == 77


def test_missing_config_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAMORU_CONFIG", "/nonexistent/mamoru.toml")
    with pytest.raises(FileNotFoundError, match=r"/nonexistent/mamoru\.toml: no such"):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MAMORU_DATABASE_URL", "mysql://x", "must start with postgresql://"),
        ("MAMORU_PDF_DPI", "5", "greater than or equal to 36"),
        ("MAMORU_LOG_LEVEL", "loud", "unknown log level"),
        ("MAMORU_MAX_IMAGE_PIXELS", "lots", "valid integer"),
    ],
)
def test_invalid_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=message):
        load_settings()


def test_unknown_key_in_toml_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "mamoru.toml"
    config.write_text("max_image_pixel = 5\n")  # typo
    monkeypatch.setenv("MAMORU_CONFIG", str(config))
    with pytest.raises(ValidationError, match="max_image_pixel"):
        load_settings()


def test_readme_documents_every_setting() -> None:
    text = README.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(MAMORU_[A-Z_]+)` \|", text, flags=re.MULTILINE))
    expected = {f"MAMORU_{name.upper()}" for name in Settings.model_fields} | {"MAMORU_CONFIG"}
    assert documented == expected
