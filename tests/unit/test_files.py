import json
import os

from golden.files import write_json


def test_write_json_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")
    write_json(path, {"b": 1, "a": [2]})
    assert json.loads(path.read_text()) == {"a": [2], "b": 1}
    assert path.read_text().index('"a"') < path.read_text().index('"b"')
    assert os.listdir(tmp_path) == ["state.json"]


def test_write_json_keeps_the_order_given_when_asked(tmp_path):
    path = tmp_path / "run.json"
    write_json(path, {"b": 1, "a": 2}, sort_keys=False)
    assert list(json.loads(path.read_text())) == ["b", "a"]
