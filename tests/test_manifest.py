"""The one manifest reader (codec12/data/manifest.py): every format it accepts, path resolution, ids, and the
errors it raises for rows it cannot read. The format is documented in docs/manifests.md."""

import json
import os
from pathlib import Path

import pytest

from codec12.data.inputs import discover_inputs
from codec12.data.manifest import ManifestRow, iter_manifest, read_manifest
from codec12.distill.measure import read_alignments
from codec12.eval.harness import read_transcripts
from codec12.train.data import read_items


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def summary(rows: list[ManifestRow]) -> list[tuple]:
    return [(r.id, r.path, r.text, r.language) for r in rows]


# ---------------------------------------------------------------- formats
def test_jsonl_columns_ids_and_extra(tmp_path):
    m = write(tmp_path / "m.jsonl", "\n".join([
        json.dumps({"path": "a.wav", "text": " hello ", "language": "nl", "speaker": "s1", "duration_s": 1.5}),
        "",  # blank lines are skipped
        json.dumps({"audio_filepath": "sub/b.flac", "id": 7, "transcript": "bye"}),
        json.dumps({"audio": "c.wav", "text": " ", "language": ""}),  # blank: no transcript, no language
    ]) + "\n")
    rows = read_manifest(m)
    assert summary(rows) == [("a", str(tmp_path / "a.wav"), "hello", "nl"),
                             ("7", str(tmp_path / "sub" / "b.flac"), "bye", None),
                             ("c", str(tmp_path / "c.wav"), None, None)]
    assert rows[0].extra == {"speaker": "s1", "duration_s": 1.5} and rows[1].extra == {}
    assert [r.where for r in rows] == [f"{m}:1", f"{m}:3", f"{m}:4"]
    # .json is read as JSONL too
    write(tmp_path / "m.json", json.dumps({"file": "a.wav"}) + "\n")
    assert summary(read_manifest(tmp_path / "m.json")) == [("a", str(tmp_path / "a.wav"), None, None)]


def test_tables_with_and_without_header(tmp_path):
    write(tmp_path / "m.tsv", "ID\tPath\tText\tspeaker\nk0\ta.wav\thi there\ts1\nk1\tsub/b.wav\t\ts2\n")
    rows = read_manifest(tmp_path / "m.tsv")
    assert summary(rows) == [("k0", str(tmp_path / "a.wav"), "hi there", None),
                             ("k1", str(tmp_path / "sub" / "b.wav"), None, None)]
    assert [r.extra for r in rows] == [{"speaker": "s1"}, {"speaker": "s2"}]
    assert [r.where for r in rows] == [f"{tmp_path / 'm.tsv'}:2", f"{tmp_path / 'm.tsv'}:3"]
    # CSV, with quoting (a transcript holding a comma and a newline: the next row's line number follows it)
    write(tmp_path / "m.csv", 'path,text,language\na.wav,"one, two\nthree",en-us\nb.wav,four,\n')
    rows = read_manifest(tmp_path / "m.csv")
    assert [(r.text, r.language) for r in rows] == [("one, two\nthree", "en-us"), ("four", None)]
    assert rows[1].where.endswith("m.csv:4")
    # a .csv whose header is tab-separated is a TSV
    write(tmp_path / "tabs.csv", "path\ttext\na.wav\thello, world\n")
    assert read_manifest(tmp_path / "tabs.csv")[0].text == "hello, world"
    # no header: the first column is the path, the others are ignored
    write(tmp_path / "plain.tsv", "a.wav\t16000\nsub/b.wav\t8000\n")
    assert summary(read_manifest(tmp_path / "plain.tsv")) == [("a", str(tmp_path / "a.wav"), None, None),
                                                              ("sub/b", str(tmp_path / "sub/b.wav"), None, None)]
    # a header with ids and no path column: the ids name the files
    write(tmp_path / "ids.csv", "id,text\nsub/b,bye\n")
    assert summary(read_manifest(tmp_path / "ids.csv")) == [("sub/b", str(tmp_path / "sub" / "b"), "bye", None)]


def test_fairseq_table_names_its_root(tmp_path):
    (tmp_path / "audio" / "sub").mkdir(parents=True)
    write(tmp_path / "lists" / "train.tsv", f"{tmp_path / 'audio'}\na.wav\t100\nsub/b.wav\t200\n")
    rows = read_manifest(tmp_path / "lists" / "train.tsv")
    assert summary(rows) == [("a", str(tmp_path / "audio" / "a.wav"), None, None),
                             ("sub/b", str(tmp_path / "audio" / "sub" / "b.wav"), None, None)]
    write(tmp_path / "lists" / "rel.tsv", "../audio\na.wav\t100\n")  # a relative root: relative to the manifest
    assert read_manifest(tmp_path / "lists" / "rel.tsv")[0].path == str(tmp_path / "audio" / "a.wav")


def test_plain_lists_and_sniffed_formats(tmp_path):
    write(tmp_path / "m.txt", "# a comment\n\na.wav\n  sub/b.flac  \n")
    assert summary(read_manifest(tmp_path / "m.txt")) == [("a", str(tmp_path / "a.wav"), None, None),
                                                          ("sub/b", str(tmp_path / "sub" / "b.flac"), None, None)]
    for suffix in (".lst", ".list", ".scp", ".anything"):
        write(tmp_path / f"m{suffix}", "a.wav\n")
        assert [r.path for r in read_manifest(tmp_path / f"m{suffix}")] == [str(tmp_path / "a.wav")]
    # any other suffix: JSON objects are JSONL, a header naming known columns is a table
    write(tmp_path / "align.txt", json.dumps({"audio": "a.wav", "phones": ["x"]}) + "\n")
    assert read_manifest(tmp_path / "align.txt")[0].extra == {"phones": ["x"]}
    write(tmp_path / "t.txt", "path,transcript\na.wav,hello\n")
    assert summary(read_manifest(tmp_path / "t.txt")) == [("a", str(tmp_path / "a.wav"), "hello", None)]
    write(tmp_path / "tt.txt", "file\ttext\na.wav\thello, you\n")
    assert read_manifest(tmp_path / "tt.txt")[0].text == "hello, you"


def test_byte_order_mark_and_crlf(tmp_path):
    write(tmp_path / "m.csv", b"\xef\xbb\xbfpath,text\r\na.wav,hi\r\n")
    assert summary(read_manifest(tmp_path / "m.csv")) == [("a", str(tmp_path / "a.wav"), "hi", None)]
    write(tmp_path / "m.jsonl", b'\xef\xbb\xbf{"path": "a.wav"}\r\n')
    assert read_manifest(tmp_path / "m.jsonl")[0].path == str(tmp_path / "a.wav")


# ---------------------------------------------------------------- paths and ids
def test_paths_resolve_against_the_manifest_folder_or_root(tmp_path, monkeypatch):
    lines = ["a.wav", "./x/../b.wav", "../up.wav", str(tmp_path / "abs" / "c.wav"), "~/home.wav"]
    m = write(tmp_path / "lists" / "m.txt", "\n".join(lines) + "\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    rows = read_manifest(m)
    assert [r.path for r in rows] == [str(tmp_path / "lists" / "a.wav"), str(tmp_path / "lists" / "b.wav"),
                                      str(tmp_path / "up.wav"), str(tmp_path / "abs" / "c.wav"),
                                      str(tmp_path / "home" / "home.wav")]
    # ids: relative to the folder without the suffix; outside it (or absolute), the full path without "/"
    outside = [str(tmp_path / "up"), str(tmp_path / "abs" / "c"), str(tmp_path / "home" / "home")]
    assert [r.id for r in rows] == ["a", "b", *(p.lstrip("/") for p in outside)]
    # root given by the caller (eval: paths relative to the data directory)
    assert read_manifest(m, root=tmp_path / "data")[0].path == str(tmp_path / "data" / "a.wav")
    # a manifest named by a relative path gives relative paths, relative to the working directory
    monkeypatch.chdir(tmp_path)
    assert read_manifest(Path("lists") / "m.txt")[0].path == os.path.join("lists", "a.wav")


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("name, text, match", [
    ("m.jsonl", '{"path": "a.wav"}\n{not json\n', r"m.jsonl:2: not JSON"),
    ("m.jsonl", '{"path": "a.wav"}\n\n["a.wav"]\n', r"m.jsonl:3: expected a JSON object, got list"),
    ("m.jsonl", '{"wav_no": 1}\n', r"m.jsonl:1: no path column \(one of path, audio_filepath"),
    ("m.jsonl", '{"path": 3}\n', r"m.jsonl:1: no path column"),
    ("m.jsonl", '{"path": "a.wav", "text": 3}\n', r"m.jsonl:1: 'text' and 'language' must be strings; 'text' is int"),
    ("m.jsonl", '{"path": "a.wav", "language": ["nl"]}\n', r"m.jsonl:1: .*'language' is list"),
    ("m.tsv", "path\ttext\na.wav\thi\n\t\nx\n \tbye\n", r"m.tsv:5: no path"),
    ("m.csv", "text,speaker\nhi,s\n", r"m.csv:1: the header names no path column"),
    ("m.jsonl", b'{"path": "a.wav"}\n{"path": "\xff.wav"}\n', r"m.jsonl:2: not UTF-8 text"),
    ("m.wav", b"RIFF\x00\x00\xff\xfeWAVEfmt ", r"m.wav:1: not UTF-8 text .*is this a manifest\?"),
])
def test_bad_rows_name_the_file_and_line(tmp_path, name, text, match):
    write(tmp_path / name, text)
    with pytest.raises(ValueError, match=match):
        read_manifest(tmp_path / name)


def test_rows_before_a_bad_one_come_out_one_at_a_time(tmp_path):
    m = write(tmp_path / "m.jsonl", '{"path": "a.wav"}\n{"path": "b.wav"}\n{oops\n')
    rows = iter_manifest(m)
    assert [next(rows).id, next(rows).id] == ["a", "b"]
    with pytest.raises(ValueError, match="m.jsonl:3"):
        next(rows)


@pytest.mark.parametrize("name, text", [("m.jsonl", ""), ("m.jsonl", "\n\n"), ("m.csv", "path,text\n"),
                                        ("m.txt", "# only a comment\n"), ("m.tsv", "")])
def test_empty_manifest(tmp_path, name, text):
    write(tmp_path / name, text)
    assert list(iter_manifest(tmp_path / name)) == []
    with pytest.raises(ValueError, match=f"{name}: the manifest lists no files"):
        read_manifest(tmp_path / name)


def test_missing_or_unreadable_manifest(tmp_path):
    with pytest.raises(ValueError, match=r"gone.jsonl: cannot read manifest \(No such file"):
        read_manifest(tmp_path / "gone.jsonl")
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(ValueError, match=r"dir.jsonl: cannot read manifest"):
        read_manifest(tmp_path / "dir.jsonl")


# ---------------------------------------------------------------- one manifest for every command
def test_every_reader_takes_the_same_manifest(tmp_path):
    """tokenize, train, eval and semantic-measure read one manifest the same way."""
    m = write(tmp_path / "data" / "all.jsonl", "".join(json.dumps(r) + "\n" for r in [
        {"path": "wavs/u1.wav", "id": "one", "text": "hello", "language": "en-us", "phones": ["h", "a"]},
        {"path": "wavs/u2.wav", "text": "bye", "intervals": [[0.0, 0.16, "b"]]},
    ]))
    paths = [str(tmp_path / "data" / "wavs" / n) for n in ("u1.wav", "u2.wav")]
    assert [(r.id, r.path) for r in discover_inputs(m)] == [("one", paths[0]), ("wavs/u2", paths[1])]
    assert [(r.path, r.text, r.language) for r in read_items(m)] == [(paths[0], "hello", "en-us"),
                                                                       (paths[1], "bye", None)]
    assert read_transcripts(m, tmp_path / "data") == {"wavs/u1.wav": "hello", "wavs/u2.wav": "bye"}
    assert [(a.id, str(a.audio), a.labels) for a in read_alignments(m)] == [("one", paths[0], ["h", "a"]),
                                                                           ("wavs/u2", paths[1], ["b", "b"])]
    for read in (discover_inputs, read_items, read_alignments, lambda p: read_transcripts(p, tmp_path)):
        write(tmp_path / "empty.jsonl", "")
        with pytest.raises(ValueError, match="empty.jsonl: the manifest lists no files"):
            read(tmp_path / "empty.jsonl")
