"""Draw ``latest.png`` from ``latest.json``: one panel per throughput comparison, log scale.

    python bench/chart.py bench/results/latest.json bench/results/latest.png

Run by the harness with the peers' interpreter, which has matplotlib (redrelay does not
depend on it).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"redrelay": "#c0392b", "seed": "#7f8c8d", "raw": "#bdc3c7", "peer": "#2e86c1"}


def main(source: str, target: str) -> None:
    doc: dict[str, Any] = json.loads(open(source).read())
    rows = [
        r
        for r in doc["rows"]["memory"]
        if r["unit"] == "msg/s" and "median" in r and r.get("section", "main") == "main"
    ]  # the interleaved comparisons have their own table
    titles = list(dict.fromkeys(r["group"] for r in rows))
    heights = [len([r for r in rows if r["group"] == t]) for t in titles]
    fig, axes = plt.subplots(
        len(titles), 1, figsize=(9, 1.1 + 0.32 * sum(heights) + 0.6 * len(titles)),
        gridspec_kw={"height_ratios": heights}, squeeze=False,
    )  # fmt: skip
    for ax, title in zip(axes[:, 0], titles, strict=True):
        group = sorted(
            (r for r in rows if r["group"] == title), key=lambda r: r["median"]
        )
        y = range(len(group))
        medians = [r["median"] for r in group]
        err = [
            [r["median"] - r["min"] for r in group],
            [r["max"] - r["median"] for r in group],
        ]
        ax.barh(
            y, medians, xerr=err, color=[COLORS[r["role"]] for r in group], capsize=2
        )
        ax.set_yticks(list(y), [r["label"] for r in group], fontsize=8)
        ax.set_xscale("log")
        ax.set_title(title, fontsize=9, loc="left")
        ax.tick_params(axis="x", labelsize=8)
        for i, r in enumerate(group):
            ax.text(r["max"] * 1.08, i, f"{r['median']:,.0f}", va="center", fontsize=7)
        ax.set_xlim(left=max(1, min(medians) / 3), right=max(medians) * 8)
    m = doc["machine"]
    fig.suptitle(
        f"msg/s, log scale (median, bars min-max over {doc['config']['rounds']} rounds, "
        f"N={doc['config']['n']:,}) - {m['cpu']}, {m['cores']} cores, redis {m['redis_server']}",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
