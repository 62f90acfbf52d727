#!/usr/bin/env python3
"""Prints a digest of one run directory that leaves out what differs from run to run by design
(the run id, times, durations, the git commit, history.csv's wall-clock seconds per epoch and
the keys and digests downstream of it), so two runs of one experiment by two builds can be
compared byte for byte:

    tools/run-digest.py artifacts-old/runs/ID > old.txt
    tools/run-digest.py artifacts-new/runs/ID > new.txt
    diff old.txt new.txt     # no output: every stage key, output digest and published file agree

Used to show that a refactor changes no result. Per stage: its kind, version, key and each
output's blake3 from run.toml, and its metrics; then the sha256 of every published file, with
report.html and summary.txt normalized as above.
"""
import hashlib
import os
import re
import sys
import tomllib


def normalized_page(text: str, run_id: str) -> str:
    text = text.replace(run_id, "RUN")
    text = re.sub(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+Z| UTC)?", "TIME", text)
    text = re.sub(r'(<td class="num">)[0-9.]+ (ms|s)<', r"\1DUR<", text)
    text = re.sub(r"<dd>[0-9.]+ (ms|s|min)( [0-9.]+ s)?</dd>", "<dd>DUR</dd>", text)
    # Every key and digest (those downstream of history.csv differ run to run; the others are
    # compared through run.toml above), and the short key shown beside a full one.
    text = re.sub(r"[0-9a-f]{64}", "HASH", text)
    text = re.sub(r'title="HASH">[0-9a-f]{12}', 'title="HASH">KEY', text)
    return re.sub(r"<code>[0-9a-f]{40}", "<code>COMMIT", text)


def main(run_dir: str) -> None:
    run_id = os.path.basename(run_dir.rstrip("/"))
    with open(os.path.join(run_dir, "run.toml"), "rb") as f:
        record = tomllib.load(f)
    history = {
        out["blake3"]
        for stage in record["stages"]
        for out in stage.get("outputs", {}).values()
        if out.get("file") == "history.csv"
    }
    lines = []
    for stage in record["stages"]:
        timed = any(i.get("digest") in history for i in stage.get("inputs", {}).values())
        key = "(depends on history timings)" if timed else stage["key"]
        lines.append(f"stage {stage['name']} kind={stage['kind']} v{stage['kind_version']} key={key}")
        for name, out in sorted(stage.get("outputs", {}).items()):
            digest = "(history)" if out["blake3"] in history else out["blake3"]
            lines.append(f"  out {name} {out['file']} {digest}")
        lines.append(f"  metrics {sorted(stage.get('metrics', {}).items())}")
    lines.append(f"params {sorted(record.get('params', {}).items())}")
    lines.append(f"device {sorted(record.get('device', {}).items())}")
    lines.append(f"experiment {record.get('experiment', {}).get('digest')}")
    for name in sorted(os.listdir(run_dir)):
        if name == "run.toml":
            continue
        with open(os.path.join(run_dir, name), "rb") as f:
            data = f.read()
        if name == "history.csv":
            # Column 6 is the epoch's wall-clock seconds.
            data = b"\n".join(
                b",".join(row.split(b",")[:5] + row.split(b",")[6:]) for row in data.split(b"\n")
            )
        elif name in ("report.html", "summary.txt"):
            data = normalized_page(data.decode(), run_id).encode()
        lines.append(f"file {name} {hashlib.sha256(data).hexdigest()}")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: tools/run-digest.py RUN_DIR")
    main(sys.argv[1])
