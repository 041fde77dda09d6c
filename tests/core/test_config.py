import pytest

from igikit.core.config import read_yaml
from igikit.errors import InputError


def test_read_yaml_names_the_file_and_the_problem(tmp_path) -> None:
    good = tmp_path / "p.yaml"
    good.write_text("a: 1\nb: [2, 3]\n")
    assert read_yaml(good, "plan") == {"a": 1, "b": [2, 3]}
    with pytest.raises(InputError, match="plan file not found"):
        read_yaml(tmp_path / "missing.yaml", "plan")
    with pytest.raises(InputError, match="cannot read plan"):
        read_yaml(tmp_path, "plan")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(InputError, match=r"bad.yaml: invalid YAML at line \d+, column \d+"):
        read_yaml(bad, "plan")
