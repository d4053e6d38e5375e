"""Draw the benchmark results as SVG charts for docs/benchmarks.md.

Reads the JSON that the benchmark scripts wrote to ``benchmarks/results/`` and
writes three charts:

- ``speed_vs_peers.svg``: seconds per epoch of PyTorch over sparse_deep's
  (``epoch_vs_pytorch.json``) and fit time of scikit-learn's MLPClassifier over
  SparseMLPClassifier's (``mlp_vs_sklearn.json``);
- ``recommender_quality.svg``: recall@20 and NDCG@20 of the default
  recommender and the baselines on each data set (``recommender_quality.json``);
- ``scale_sweep.svg``: epoch time and peak memory against the number of
  items, for each output layer (``scale_sweep.json``).

Each chart states the machine and the protocol its JSON records. Nothing is
measured here. The SVGs are deterministic (a fixed ``svg.hashsalt``, no date,
matplotlib's default style whatever the user's matplotlibrc): the same results
and matplotlib version give the same bytes, so a test can check that the
committed charts are those of the committed results.

Usage
    python benchmarks/plot_results.py [--results benchmarks/results] [--out docs/img]
"""

import argparse
import json
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display; before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: E402

# absolute(), not resolve(): run through a link to this folder (as the docs'
# test does, from a scratch folder), the defaults are beside the link, so the
# charts go to that folder's docs/img rather than the checkout's.
HERE = Path(__file__).absolute().parent
DEFAULT_RESULTS = HERE / "results"
DEFAULT_OUT = HERE.parent / "docs" / "img"

# svg.hashsalt fixes the ids matplotlib gives clip paths and glyphs (random
# otherwise); the rest keeps the charts small and legible in the docs.
RC = {
    "svg.hashsalt": "sparse_deep-benchmarks",
    # Text as text, not glyph outlines: a third of the size, searchable, and a
    # diff of a regenerated chart shows the numbers that changed.
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
SVG_METADATA = {"Date": None}  # no timestamp, so regenerating changes nothing

SPARSE_DEEP_COLOR, PEER_COLOR = "C0", "C7"
NOTE_SIZE = 7
NOTE_WIDTH = 150  # characters per line of a chart's machine/protocol note


# -- reading ------------------------------------------------------------------

def load_results(results_dir, name):
    """The JSON document ``results_dir/name``."""
    with open(Path(results_dir) / name, encoding="utf-8") as f:
        return json.load(f)


def thousands(n):
    return f"{int(n):,}"


# -- drawing helpers ----------------------------------------------------------

def add_note(fig, lines, height):
    """Write the machine/protocol ``lines`` along the bottom of ``fig``, in a
    strip ``height`` (a fraction of the figure) that the axes leave free."""
    text = "\n".join(textwrap.fill(line, NOTE_WIDTH) for line in lines)
    fig.text(0.01, 0.01, text, ha="left", va="bottom", fontsize=NOTE_SIZE, color="0.25",
             linespacing=1.4)
    fig.subplots_adjust(bottom=height)


def label_bars(ax, bars, labels, **kwargs):
    """Write ``labels`` at the end of ``bars``."""
    ax.bar_label(bars, labels=labels, padding=2, fontsize=7, **kwargs)


def save(fig, path):
    fig.savefig(path, format="svg", metadata=SVG_METADATA)
    plt.close(fig)
    print(f"wrote {path}")


# -- (a) speed against the peers ----------------------------------------------

def plot_epoch_ratio(ax, epoch):
    """Bars of PyTorch's s/epoch over sparse_deep's, per data set and network."""
    rows = epoch["results"]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    networks = list(dict.fromkeys(r["network"] for r in rows))
    width = 0.8 / len(networks)
    for j, network in enumerate(networks):
        picked = [next(r for r in rows if r["dataset"] == d and r["network"] == network)
                  for d in datasets]
        ratios = [r["pytorch_s_per_epoch"] / r["sparse_deep_s_per_epoch"] for r in picked]
        x = np.arange(len(datasets)) + (j - (len(networks) - 1) / 2) * width
        bars = ax.bar(x, ratios, width * 0.9, color=f"C{j}",
                      label=f"{network} network ({picked[0]['hidden']} hidden)")
        label_bars(ax, bars, [
            f"{q:.2f}x\n{r['sparse_deep_s_per_epoch']:.3f} vs\n{r['pytorch_s_per_epoch']:.3f} s"
            for q, r in zip(ratios, picked)])
    shapes = {r["dataset"]: r["shape"] for r in rows}
    ax.set_xticks(np.arange(len(datasets)),
                  [f"{d}\n{thousands(shapes[d][0])} x {thousands(shapes[d][1])}" for d in datasets])
    device = epoch["machine"]["device"].upper()
    ax.set_title(f"Seconds per epoch vs PyTorch ({device})")
    ax.set_ylabel("PyTorch s/epoch \u00f7 sparse_deep s/epoch\n(> 1: sparse_deep faster)")
    same_speed(ax)
    ax.legend(loc="upper left", fontsize=7)


def plot_mlp_ratio(ax, mlp):
    """Bars of scikit-learn's fit time over SparseMLPClassifier's, per data set."""
    sets = mlp["data_sets"]
    ratios = [s["summary"]["fit_time_ratio_sklearn_over_sparse_deep"] for s in sets]
    bars = ax.bar(np.arange(len(sets)), ratios, 0.5, color=SPARSE_DEEP_COLOR)
    label_bars(ax, bars, [
        f"{q:.2f}x\n{s['summary']['sparse_deep']['fit_seconds_median']:.1f} vs\n"
        f"{s['summary']['sklearn']['fit_seconds_median']:.1f} s" for q, s in zip(ratios, sets)])
    ax.set_xticks(np.arange(len(sets)), [mlp_tick(s) for s in sets])
    ax.set_title("Fit time vs scikit-learn's MLPClassifier (CPU)")
    ax.set_ylabel("MLPClassifier fit s \u00f7 SparseMLPClassifier fit s\n(> 1: sparse_deep faster)")
    same_speed(ax)


def mlp_tick(data_set):
    """A data set's name, shape and first test metric of both estimators."""
    summary = data_set["summary"]
    metric = next(k for k in summary["sparse_deep"] if k.endswith("_mean"))
    shape = data_set["train_shape"]
    return (f"{data_set['data_set']}\n{thousands(shape[0])} x {thousands(shape[1])}\n"
            f"{metric[:-len('_mean')]}\n{summary['sparse_deep'][metric]:.3f} vs "
            f"{summary['sklearn'][metric]:.3f}")


def same_speed(ax):
    """A line at ratio 1 and headroom above the bars for their labels."""
    ax.axhline(1.0, color="0.3", linewidth=0.8, linestyle="--")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.35)
    ax.grid(axis="x", visible=False)


def speed_notes(epoch, mlp):
    m = epoch["machine"]
    counts = sorted({len(r["sparse_deep_epochs_s"]) for r in epoch["results"]})
    first = epoch["results"][0]
    recall_gap = max(abs(r["sparse_deep_recall@20"] - r["pytorch_recall@20"])
                     for r in epoch["results"])
    shared, versions = mlp["shared_settings"], mlp["versions"]
    return [
        f"Left (epoch_vs_pytorch.json): device {m['device']}, {m['cpus']} CPUs, {m['threads']} "
        f"threads for both, torch {m['torch']}, {m['platform']}. The same autoencoder and data "
        f"in both, batch {first['batch_size']}, {first['optimizer']} {first['learning_rate']:g}, "
        f"each framework in its own process, epochs alternating after a warm-up; median of "
        f"{'/'.join(map(str, counts))} timed epochs; recall@20 after {first['epochs_trained']} "
        f"epochs within {recall_gap:.4f} of PyTorch's.",
        f"Right (mlp_vs_sklearn.json): {mlp['machine']['cpus']} CPUs ({mlp['note']}), "
        f"scikit-learn {versions['sklearn']}, Python {versions['python']}. Same hidden layers "
        f"{tuple(shared['hidden_layer_sizes'])}, {shared['epochs']} epochs, batch "
        f"{shared['batch_size']}, Adam {shared['learning_rate']:g}, every epoch run; median fit "
        f"time over {len(mlp['seeds'])} seeds, sparse_deep's kernels compiled beforehand; "
        "under each data set its test quality (mean over seeds), sparse_deep vs scikit-learn.",
    ]


def chart_speed(results_dir):
    epoch = load_results(results_dir, "epoch_vs_pytorch.json")
    mlp = load_results(results_dir, "mlp_vs_sklearn.json")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.6),
                                      gridspec_kw={"width_ratios": [3, 2]})
    plot_epoch_ratio(left, epoch)
    plot_mlp_ratio(right, mlp)
    fig.subplots_adjust(left=0.08, right=0.99, top=0.92, wspace=0.3)
    add_note(fig, speed_notes(epoch, mlp), height=0.34)
    return fig


# -- (b) recommender quality --------------------------------------------------

MODEL_LABELS = {
    "popularity": "popularity",
    "implicit-als": "implicit ALS (defaults)",
    "implicit-als-tuned": "implicit ALS (tuned)",
    "ease": "EASE (tuned)",
    "mult-dae-torch": "Mult-DAE, PyTorch (tuned)",
    "sparse_deep": "sparse_deep (defaults)",
}


def plot_quality(ax, rows, k, show_labels):
    """Horizontal bars of recall@k and NDCG@k of each model on one data set."""
    y = np.arange(len(rows))[::-1]  # the first model on top
    height = 0.38
    for offset, metric, color in ((height / 2, f"recall@{k}", "C0"),
                                  (-height / 2, f"ndcg@{k}", "C1")):
        values = [r[metric] for r in rows]
        bars = ax.barh(y + offset, values, height * 0.95, color=color,
                       label=metric.replace("ndcg", "NDCG"))
        label_bars(ax, bars, [f"{v:.4f}" for v in values])
    ax.set_yticks(y, [MODEL_LABELS.get(r["model"], r["model"]) if show_labels else ""
                      for r in rows])
    for tick, r in zip(ax.get_yticklabels(), rows):
        if r["model"] == "sparse_deep":
            tick.set_fontweight("bold")
    first = rows[0]
    ax.set_title(f"{first['dataset']}\n{thousands(first['n_users'])} users x "
                 f"{thousands(first['n_items'])} items")
    ax.set_xlim(0, max(max(r[f"recall@{k}"], r[f"ndcg@{k}"]) for r in rows) * 1.35)
    ax.grid(axis="y", visible=False)


def fit_seconds_note(quality, datasets):
    """Seconds of the final fit, model by model, one data set a line."""
    lines = []
    for dataset in datasets:
        fits = ", ".join(f"{MODEL_LABELS.get(r['model'], r['model'])} {r['fit_seconds']:.1f}"
                         for r in quality["results"] if r["dataset"] == dataset)
        lines.append(f"Fit seconds on {dataset}: {fits}.")
    return lines


def quality_notes(quality):
    env, protocol = quality["environment"], quality["protocol"]
    return [
        f"recommender_quality.json: {env['cpu']} ({env['machine']}), {env['cpu_count']} CPUs, "
        f"Python {env['python']}, numpy {env['numpy']}, scikit-learn {env['scikit-learn']}, "
        f"implicit {env['implicit']}, torch {env['torch']}; one run per model.",
        f"Protocol: fit on {protocol['fit_on']} ({protocol['validation_split']}; "
        f"{protocol['selection']}); {protocol['ranking']}; {protocol['evaluated_users']}; "
        f"fit = {protocol['fit_seconds']}. sparse_deep: {quality['models']['sparse_deep']}.",
    ]


def chart_quality(results_dir):
    quality = load_results(results_dir, "recommender_quality.json")
    k = quality["k"]
    datasets = list(dict.fromkeys(r["dataset"] for r in quality["results"]))
    per_set = [[r for r in quality["results"] if r["dataset"] == d] for d in datasets]
    # Model names only on the first panel when every panel lists the same models.
    same_order = len({tuple(r["model"] for r in rows) for rows in per_set}) == 1
    fig, axes = plt.subplots(1, len(datasets), figsize=(10, 6.6), squeeze=False)
    for i, (ax, rows) in enumerate(zip(axes[0], per_set)):
        plot_quality(ax, rows, k, show_labels=i == 0 or not same_order)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"Recommendation quality at k = {k}: the default recommender against "
                 "baselines tuned on validation splits", fontsize=10, x=0.01, ha="left")
    fig.subplots_adjust(left=0.19, right=0.98, top=0.87,
                        wspace=0.15 if same_order else 0.9)
    add_note(fig, quality_notes(quality) + fit_seconds_note(quality, datasets), height=0.31)
    return fig


# -- (c) scale sweep ----------------------------------------------------------

GIB = 2.0 ** 30


def sweep_series(sweep):
    """{(n_users, output): rows sorted by items}; the users count with the most
    sizes is the main series (the others show what more users change)."""
    series = {}
    for r in sweep["results"]:
        series.setdefault((r["n_users"], r["output"]), []).append(r)
    for rows in series.values():
        rows.sort(key=lambda r: r["n_items"])
    counts = {}
    for (users, _), rows in series.items():
        counts[users] = max(counts.get(users, 0), len(rows))
    main_users = max(counts, key=lambda u: (counts[u], -u))
    return series, main_users


def plot_sweep(ax, sweep, value, ylabel):
    """One line per output layer of ``value(row)`` against the number of items;
    other user counts than the main one as open squares."""
    series, main_users = sweep_series(sweep)
    for j, output in enumerate(sweep["outputs"]):
        for (users, name), rows in series.items():
            if name != output:
                continue
            main = users == main_users
            label = f"{output}, {thousands(users)} users"
            if main and output != "full":
                last = rows[-1]
                label += (f": {last['speedup_vs_full']:.1f}x full's speed at "
                          f"{items_label(last['n_items'])} items")
            ax.plot([r["n_items"] for r in rows], [value(r) for r in rows], color=f"C{j}",
                    marker="o" if main else "s", linestyle="-" if main else "none",
                    markerfacecolor=None if main else "none", markersize=6 if main else 8,
                    label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: items_label(x)))
    # 1-2-5 ticks: a decade apart, too few for this narrow range of memory.
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _: ""))
    ax.set_xlabel("items (output units)")
    ax.set_ylabel(ylabel)


def items_label(n):
    """10000 -> 10K, 1000000 -> 1M."""
    for size, suffix in ((1e6, "M"), (1e3, "K")):
        if n >= size:
            return f"{n / size:g}{suffix}"
    return f"{n:g}"


def sweep_notes(sweep):
    outputs = "; ".join(
        f"{name} = loss {o['loss']}" + (", sparse_input_update" if o["sparse_input_update"] else "")
        for name, o in sweep["outputs"].items())
    nnz = sorted({r["nnz"] for r in sweep["results"]})
    return [
        f"scale_sweep.json: {sweep['cpus']} CPUs; {sweep['hidden']} hidden units (tanh, Adam), "
        f"batch {sweep['batch_size']}; synthetic power-law data (Zipf 1.1, about 25 items per "
        f"user; {thousands(nnz[0])} to {thousands(nnz[-1])} non-zeros); one warm-up and one "
        "timed epoch, each (size, output) in a fresh process. Peak memory is the process's "
        "peak RSS, including what it held before fitting.",
        f"Outputs: {outputs}.",
    ]


def chart_sweep(results_dir):
    sweep = load_results(results_dir, "scale_sweep.json")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.6))
    plot_sweep(left, sweep, lambda r: r["epoch_s"], "seconds per epoch")
    left.set_title("Epoch time")
    plot_sweep(right, sweep, lambda r: r["peak_rss_bytes"] / GIB, "peak memory (GiB)")
    right.set_title("Peak memory (RSS): the same for more users")
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=3, fontsize=7, frameon=False)
    fig.subplots_adjust(left=0.07, right=0.99, top=0.82, wspace=0.2)
    add_note(fig, sweep_notes(sweep), height=0.25)
    return fig


CHARTS = {
    "speed_vs_peers.svg": chart_speed,
    "recommender_quality.svg": chart_quality,
    "scale_sweep.svg": chart_sweep,
}


def write_charts(results_dir, out_dir):
    """Draw every chart of ``CHARTS`` from ``results_dir`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The default style first: a user's matplotlibrc would change the bytes.
    with plt.style.context("default"), matplotlib.rc_context(RC):
        for name, chart in CHARTS.items():
            save(chart(results_dir), out_dir / name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=DEFAULT_RESULTS,
                        help="folder of the benchmarks' JSON (default: benchmarks/results)")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="folder for the SVG charts (default: docs/img)")
    args = parser.parse_args(argv)
    write_charts(args.results, args.out)


if __name__ == "__main__":
    main()
