"""The ``sparse-deep`` command: DSSTNE's generate / train / predict workflow.

::

    sparse-deep generate -d gl_input -i ratings.txt -o gl_input.nc -f features_input \
        -s samples_input -c
    sparse-deep train -c config.json -i gl_input.nc -o gl_output.nc -n gl.nc -b 256 -e 10
    sparse-deep predict -b 256 -d gl -i features_input -o features_output -k 10 -n gl.nc \\
        -f ratings.txt -s recs -r ratings.txt
    sparse-deep info

The flags are DSSTNE's (``generateNetCDF``, ``train``, ``predict``), each with
a long form too; docs/cli.md lists them and says where the behaviour differs.

Only the standard library is imported here: numpy, scipy, scikit-learn, numba
and sparse_deep's engine are imported by the command that needs them, so that
``--help``, ``--version`` and a usage error answer at once.
"""

import argparse
import contextlib
import json
import os
import signal
import sys
import time

from .core.devices import DEVICES
from .core.optimizers import OPTIMIZERS

PROG = "sparse-deep"

# DSSTNE's train defaults (Train.cpp) and fixed seed (Utils.h FIXED_SEED), by the
# estimator parameter each flag sets.
TRAIN_DEFAULTS = {
    "batch_size": 1024, "epochs": 40, "learning_rate": 0.025, "l2": 0.0001, "l1": 0.0,
    "momentum": 0.5, "optimizer": "sgd", "device": "cpu", "random_state": 12134,
    "normalize_input": False,
}
DEFAULT_NETWORK_FILE = "network.nc"


class CommandError(ValueError):
    """A problem with the command's inputs, reported as one line without a traceback."""


# -- output helpers -----------------------------------------------------------------


class _Console:
    """Messages to ``stream`` (stdout, or stderr when the results go to stdout)
    and progress bars to stderr, both silenced by --quiet; bars are also off
    when stderr is not a terminal (logs, pipes)."""

    def __init__(self, quiet, stream=None):
        self.quiet = quiet
        self.stream = stream

    def say(self, message):
        if not self.quiet:
            print(message, file=self.stream or sys.stdout, flush=True)

    def bar(self, total, unit, desc, **kwargs):
        from tqdm import tqdm

        disabled = self.quiet or not _is_tty(sys.stderr)
        return tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, disable=disabled,
                    dynamic_ncols=True, leave=False, **kwargs)


# The output path that means standard output.
STDOUT = "-"


@contextlib.contextmanager
def _text_output(path):
    """A text file that appears under ``path`` only once complete, or standard
    output for ``-``."""
    from .io._files import atomic_text

    if path == STDOUT:
        yield sys.stdout
        sys.stdout.flush()
        return
    with atomic_text(path) as handle:
        yield handle


def _check_writable(path, flag, hint=""):
    """Fail before any work when ``path`` cannot be written (no such folder, a
    folder, or something other than a regular file: a device or a pipe would be
    replaced by the atomic rename, or block)."""
    if os.path.exists(path) and not os.path.isfile(path):
        kind = ("a folder; give a file name" if os.path.isdir(path)
                else "not a regular file (a device, pipe or socket)")
        raise CommandError(f"{flag} {path} is {kind}{hint}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CommandError(f"{flag} {path}: folder {directory} does not exist")


def _is_tty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- generate ------------------------------------------------------------------------


def _add_generate(subparsers):
    p = subparsers.add_parser(
        "generate", allow_abbrev=False,
        help="convert DSSTNE text data to a NetCDF data set (DSSTNE's generateNetCDF)",
        description="Convert lines 'sample<TAB>feature[,value]:feature[,value]:...' into a "
                    "DSSTNE NetCDF data set, keeping the feature and sample indices in "
                    "'label<TAB>index' files. Rows follow the sample index, so data sets "
                    "generated with the same -s file line up row by row.",
    )
    p.add_argument("-d", "--dataset", required=True, metavar="NAME",
                   help="data set name stored in the file (a layer's DataSet refers to it)")
    p.add_argument("-i", "--input", required=True, metavar="PATH",
                   help="text data: a file, or a directory whose files are read in name order")
    p.add_argument("-o", "--output", required=True, metavar="FILE.nc",
                   help="NetCDF file to write (replaced if it exists)")
    p.add_argument("-f", "--features", required=True, metavar="INDEX",
                   help="feature index file: read, or written with -c / -m")
    p.add_argument("-s", "--samples", required=True, metavar="INDEX",
                   help="sample index file: read if it exists (new samples are appended), "
                        "created otherwise")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-c", "--create-features", action="store_true",
                      help="create a new feature index from this data")
    mode.add_argument("-m", "--merge-features", action="store_true",
                      help="add this data's new features to the existing feature index")
    p.add_argument("-t", "--type", choices=("indicator", "analog"), default="indicator",
                   help="indicator: every data point is a 1 (default); analog: keep the values")
    p.add_argument("-q", "--quiet", action="store_true", help="no messages, no progress bar")
    p.set_defaults(run=run_generate)


def run_generate(args):
    from .io.netcdf_data import NetCDFDataSet, write_datasets
    from .io.text_format import read_index, read_text, text_files, write_index

    console = _Console(args.quiet)
    for path, flag in ((args.output, "-o"), (args.features, "-f"), (args.samples, "-s")):
        _check_writable(path, flag)
    analog = args.type == "analog"
    add_features = args.create_features or args.merge_features
    if args.create_features:
        features = {}
    elif not os.path.exists(args.features):
        hint = "pass -c to create it" if not args.merge_features else \
            "-m merges into an existing index; pass -c to create one"
        raise CommandError(f"feature index {args.features} does not exist; {hint}")
    else:
        features = read_index(args.features)
    samples = read_index(args.samples) if os.path.exists(args.samples) else {}
    n_samples_before = len(samples)
    files = text_files(args.input)
    total = sum(os.path.getsize(f) for f in files)
    with console.bar(total, "B", "reading", unit_scale=True) as bar:
        data = read_text(files, features, samples, analog=analog, add_features=add_features,
                         progress=bar.update)
    matrix = data.matrix
    if matrix.shape[0] == 0:
        raise CommandError(f"{args.input} holds no sample lines")
    if matrix.nnz == 0:
        raise CommandError(f"no data point of {args.input} has a feature in {args.features}; "
                           "nothing to write (pass -c or -m to add new features)")
    write_datasets(args.output, [NetCDFDataSet(args.dataset, matrix, indicator=not analog)])
    if add_features:
        write_index(args.features, data.features)
    if len(data.samples) != n_samples_before or not os.path.exists(args.samples):
        write_index(args.samples, data.samples)
    console.say(f"{args.output}: data set {args.dataset!r}, {matrix.shape[0]} examples x "
                f"{matrix.shape[1]} features, {matrix.nnz} {args.type} entries")
    if data.dropped:
        console.say(f"  {data.dropped} data point(s) skipped: feature not in {args.features} "
                    "(pass -m to add new features)")
    console.say(f"  feature index {args.features}: {len(data.features)} features; sample index "
                f"{args.samples}: {len(data.samples)} samples "
                f"({len(data.samples) - n_samples_before} new)")
    return 0


# -- train -----------------------------------------------------------------------------


def _add_train(subparsers):
    p = subparsers.add_parser(
        "train", allow_abbrev=False,
        help="train a network from a DSSTNE JSON config (DSSTNE's train)",
        description="Train the network of a DSSTNE JSON config on NetCDF data sets: the "
                    "Input layer's DataSet is read from -i, the Output layer's from -o. "
                    "Saves one model file holding the network, weights and training state; "
                    "--continue trains such a file further. Flags left out keep DSSTNE's "
                    "defaults (or, with --continue, the saved model's values).",
    )
    p.add_argument("-c", "--config", metavar="JSON",
                   help="network definition in DSSTNE's JSON language (required unless "
                        "--continue)")
    p.add_argument("-i", "--input", required=True, metavar="FILE.nc",
                   help="NetCDF file holding the Input layer's data set")
    p.add_argument("-o", "--output", required=True, metavar="FILE.nc",
                   help="NetCDF file holding the Output layer's data set (may be the same "
                        "file as -i)")
    p.add_argument("-n", "--network", default=None, metavar="FILE.nc",
                   help=f"model file to write (default {DEFAULT_NETWORK_FILE}); an existing "
                        "file is refused unless --overwrite or it is the --continue file")
    p.add_argument("-b", "--batch-size", type=int, metavar="N",
                   help=f"examples per step (default {TRAIN_DEFAULTS['batch_size']})")
    p.add_argument("-e", "--epochs", type=int, metavar="N",
                   help=f"epochs to train (default {TRAIN_DEFAULTS['epochs']}); with "
                        "--continue, epochs to add")
    p.add_argument("-alpha", "--alpha", type=float, metavar="LR",
                   help=f"learning rate (default {TRAIN_DEFAULTS['learning_rate']})")
    p.add_argument("-lambda", "--lambda", dest="l2", type=float, metavar="L2",
                   help=f"L2 weight penalty (default {TRAIN_DEFAULTS['l2']})")
    p.add_argument("-lambda1", "--lambda1", dest="l1", type=float, metavar="L1",
                   help=f"L1 weight penalty (default {TRAIN_DEFAULTS['l1']})")
    p.add_argument("-mu", "--mu", type=float, metavar="MU",
                   help=f"momentum of momentum/nesterov (default {TRAIN_DEFAULTS['momentum']})")
    _accept_ignored(p, "-mu1", "MU1",
                    "DSSTNE passed it only to Adam (its second-moment decay), which its train "
                    "never used; sparse_deep's adam keeps 0.999")
    _accept_ignored(p, "-d", "NAME",
                    "DSSTNE's train listed it in its usage but never read it; the config's "
                    "layers name the data sets")
    p.add_argument("--optimizer", type=str.lower, choices=tuple(OPTIMIZERS),
                   help=f"optimizer (default {TRAIN_DEFAULTS['optimizer']}, as DSSTNE's train)")
    p.add_argument("--device", choices=DEVICES,
                   help=f"where to train (default {TRAIN_DEFAULTS['device']})")
    p.add_argument("--seed", type=int,
                   help=f"random seed (default {TRAIN_DEFAULTS['random_state']}, DSSTNE's fixed "
                        "seed)")
    p.add_argument("--normalize-input", action="store_true", default=None,
                   help="scale each input row to unit L2 norm (off by default, as DSSTNE)")
    p.add_argument("--continue", dest="continue_from", metavar="MODEL.nc",
                   help="continue training this saved model for -e more epochs; the result "
                        "equals one longer run")
    p.add_argument("--checkpoint-interval", type=int, default=0, metavar="N",
                   help="also save the model to -n every N epochs (default 0: only at the end)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing -n file")
    p.add_argument("-q", "--quiet", action="store_true", help="no messages, no progress bar")
    p.set_defaults(run=run_train)


def run_train(args):
    from .backends.cpu.compile_notice import report_compiles_to
    from .io import model_file

    console = _Console(args.quiet)
    network_path = args.network or DEFAULT_NETWORK_FILE
    _check_can_write_model(network_path, args)
    estimator, config = _training_estimator(args)
    X, Y = _training_data(args, estimator, config)
    if args.continue_from:
        _check_resumable(estimator, X, Y, args.continue_from)
    epochs = _positive(args.epochs if args.epochs is not None else TRAIN_DEFAULTS["epochs"],
                       "-e/--epochs")
    if args.checkpoint_interval < 0:
        raise CommandError("--checkpoint-interval must be 0 or a positive number of epochs")
    first = getattr(estimator, "n_epochs_", 0) + 1
    started = time.perf_counter()
    # One fit per epoch with warm_start: each continues the last exactly, so the
    # model equals a single fit of `epochs` epochs, and the bar moves per epoch.
    estimator.set_params(epochs=1, warm_start=True)
    with console.bar(epochs, "epoch", TRAINING) as bar:
        progress = _EpochProgress(bar)
        with report_compiles_to(progress.compiling):
            for done in range(1, epochs + 1):
                estimator.fit(X, Y)
                progress.epoch_done(estimator.loss_curve_[-1])
                if args.checkpoint_interval and done % args.checkpoint_interval == 0 \
                        and done < epochs:
                    model_file.save_model(estimator, network_path)
    estimator.set_params(epochs=epochs, warm_start=False)
    model_file.save_model(estimator, network_path)
    seconds = time.perf_counter() - started
    console.say(f"trained epochs {first}-{estimator.n_epochs_} on {X.shape[0]} examples "
                f"({X.shape[1]} inputs -> {Y.shape[1]} outputs) in {seconds:.1f} s; "
                f"loss {estimator.loss_curve_[-1]:.6f}")
    console.say(f"wrote {network_path}")
    return 0


# The descriptions of train's bar: what it shows while it trains, and while numba
# compiles the kernels (on a first run on a machine, many seconds per kernel).
TRAINING = "training"
COMPILING = "compiling kernels (first run on this machine)"


class _EpochProgress:
    """train's bar over epochs, honest about compiling.

    While kernels compile, the bar says so instead of "training"; an epoch
    during which they compiled then moves the bar without counting in its rate,
    so that no ETA is shown until an epoch without compiling has finished: one
    counting the compile time would be minutes too long.
    """

    def __init__(self, bar):
        self.bar = bar
        self.compiled = False  # during the epoch under way

    def compiling(self, notice):
        """A kernel compile started (report_compiles_to calls this)."""
        if notice:  # on its own line above the bar, not into the bar's
            self.bar.write(notice.rstrip("\n"), file=sys.stderr)
        if not self.compiled:
            self.compiled = True
            self.bar.set_description_str(COMPILING)

    def epoch_done(self, loss):
        self.bar.set_postfix(loss=f"{loss:.6f}", refresh=False)
        if not self.compiled:
            self.bar.update(1)
            return
        self.compiled = False
        self.bar.set_description_str(TRAINING, refresh=False)
        _restart_clock(self.bar, self.bar.n + 1)


def _restart_clock(bar, count):
    """Set ``bar`` to ``count`` and start its clock now: its rate and ETA then
    come only from the updates after this. tqdm's reset() restarts the clock
    and the smoothed rate but zeroes the count, which is put back as the
    bar's ``initial`` count, the one tqdm's rate leaves out."""
    if bar.disable:
        return
    bar.reset()
    bar.initial = bar.n = bar.last_print_n = count
    bar.refresh()


def _check_can_write_model(path, args):
    _check_writable(path, "-n")
    same_as_continued = args.continue_from and os.path.exists(args.continue_from) and \
        os.path.exists(path) and os.path.samefile(path, args.continue_from)
    if os.path.exists(path) and not (args.overwrite or same_as_continued):
        raise CommandError(f"network file {path} already exists; pass --overwrite to replace "
                           "it, or choose another -n")


def _training_estimator(args):
    """The estimator to train and the network config (a dict) it trains."""
    from .estimators import SparseAutoencoderRecommender
    from .io import model_file
    from .network import load_network

    overrides = {"batch_size": args.batch_size, "learning_rate": args.alpha, "l2": args.l2,
                 "l1": args.l1, "momentum": args.mu, "optimizer": args.optimizer,
                 "device": args.device, "random_state": args.seed,
                 "normalize_input": args.normalize_input}
    if args.continue_from:
        estimator = model_file.load_model(args.continue_from)
        if not isinstance(estimator, SparseAutoencoderRecommender):
            raise CommandError(f"{args.continue_from} holds a {type(estimator).__name__}; "
                               "sparse-deep train continues SparseAutoencoderRecommender models")
        config = estimator.network_
        if args.config:
            given = load_network(args.config)
            if given.resolve(estimator.n_features_in_, estimator.n_items_) != \
                    estimator.model_.spec:
                raise CommandError(f"{args.config} describes another network than the one in "
                                   f"{args.continue_from}; continuing needs the same network "
                                   "(leave -c out to use the saved one)")
        estimator.set_params(**{k: v for k, v in overrides.items() if v is not None})
        return estimator, config
    if not args.config:
        raise CommandError("-c/--config is required (the network's JSON definition), unless "
                           "--continue names a saved model")
    load_network(args.config)  # validates the file with messages that name it
    with open(args.config, encoding="utf-8") as handle:
        config = json.load(handle)
    params = {k: (v if v is not None else TRAIN_DEFAULTS[k]) for k, v in overrides.items()}
    # DSSTNE's schedule: only the config's own Decay (per minibatch) lowers the rate.
    return SparseAutoencoderRecommender(network=config, learning_rate_decay=0.0, **params), config


def _training_data(args, estimator, config):
    """(inputs, targets) of the network's Input and Output layers' data sets."""
    from .io.netcdf_data import read_datasets
    from .network import parse_network

    spec = parse_network(config)
    datasets = {}
    paths = [args.input] if _same_file(args.input, args.output) else [args.input, args.output]
    for path in paths:
        for name, dataset in read_datasets(path).items():
            if name in datasets:
                raise CommandError(f"data set {name!r} is in both {args.input} and "
                                   f"{args.output}; names must be unique")
            datasets[name] = (path, dataset)
    X = _layer_data(spec.input_layer, args.input, datasets)
    Y = _layer_data(spec.output_layer, args.output, datasets)
    if X.shape[0] != Y.shape[0]:
        raise CommandError(f"the input data set has {X.shape[0]} examples but the output data "
                           f"set has {Y.shape[0]}; generate both with the same sample index "
                           "(-s), the input last if the output added samples")
    return X, Y


def _layer_data(layer, expected_path, datasets):
    import scipy.sparse as sp

    name = layer.dataset
    if not name:
        raise CommandError(f"the {layer.kind} layer {layer.name!r} names no DataSet in the "
                           "config")
    if name not in datasets:
        raise CommandError(f"the {layer.kind} layer {layer.name!r} reads data set {name!r}, "
                           f"which is not in {expected_path}; it holds: "
                           f"{', '.join(datasets) or 'nothing'}")
    path, dataset = datasets[name]
    for ignored, flag in (("per-example weights (Weighted)", dataset.weights is not None),
                          ("SparseIgnoreZero", dataset.sparse_ignore_zero)):
        if flag:
            print(f"{PROG} train: warning: data set {name!r} of {path} has {ignored}, which "
                  "this version ignores", file=sys.stderr)
    data = dataset.data
    return data if sp.issparse(data) else sp.csr_matrix(data)


def _same_file(a, b):
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def _check_resumable(estimator, X, Y, path):
    if X.shape[1] != estimator.n_features_in_ or Y.shape[1] != estimator.n_items_:
        raise CommandError(f"{path} was trained on {estimator.n_features_in_} input and "
                           f"{estimator.n_items_} output features, but these data sets have "
                           f"{X.shape[1]} and {Y.shape[1]}")


def _positive(value, flag):
    if value < 1:
        raise CommandError(f"{flag} must be a positive integer; got {value}")
    return value


# -- predict ---------------------------------------------------------------------------


def _add_predict(subparsers):
    p = subparsers.add_parser(
        "predict", allow_abbrev=False,
        help="write the top-k items for each sample of a text file (DSSTNE's predict)",
        description="Score every output item for each sample of -r with a trained model "
                    "and write 'sample<TAB>item,score:item,score:...:' lines, best first. "
                    "Items listed for a sample in the filter file(s) are never recommended "
                    "to it.",
    )
    p.add_argument("-d", "--dataset", metavar="NAME",
                   help="as DSSTNE: NAME_input must be the Input layer's DataSet (checked "
                        "when given)")
    p.add_argument("-n", "--network", required=True, metavar="MODEL.nc",
                   help="model file written by sparse-deep train")
    p.add_argument("-r", "--records", required=True, metavar="PATH",
                   help="input samples, 'sample<TAB>feature[,value]:...' (file or directory)")
    p.add_argument("-i", "--input-features", required=True, metavar="INDEX",
                   help="feature index of the network's input")
    p.add_argument("-o", "--output-features", required=True, metavar="INDEX",
                   help="feature index of the network's output (labels of the results)")
    p.add_argument("-f", "--filter", metavar="PATH",
                   help="items to leave out per sample, in the same text format (file or "
                        "directory); values are ignored")
    p.add_argument("-s", "--output", required=True, metavar="FILE",
                   help="recommendations file to write; - for standard output")
    p.add_argument("-b", "--batch-size", type=int, default=1024, metavar="N",
                   help="samples scored per block (default 1024)")
    p.add_argument("-k", type=int, default=100, metavar="K",
                   help="items per sample (default 100; any size)")
    p.add_argument("-p", "--score-format", default="4.3f", metavar="FMT",
                   help="printf format of the scores, without %% (default 4.3f)")
    p.add_argument("-t", "--type", choices=("indicator", "analog"), default="indicator",
                   help="read -r as indicator data (default, as DSSTNE) or keep its values")
    _accept_ignored(p, "-l", "LAYER",
                    "DSSTNE's predict listed it in its usage but always scored the Output "
                    "layer; so does this one (the network's output layer)")
    p.add_argument("--device", choices=DEVICES,
                   help="where to run (default: the model's)")
    p.add_argument("-q", "--quiet", action="store_true", help="no messages, no progress bar")
    p.set_defaults(run=run_predict)


def run_predict(args):
    from .io import model_file
    from .io.text_format import (
        check_score_format,
        format_recommendations,
        index_labels,
        read_text,
    )

    to_stdout = args.output == STDOUT
    console = _Console(args.quiet, stream=sys.stderr if to_stdout else None)
    if not to_stdout:
        _check_writable(args.output, "-s", hint="; give - to write to standard output")
    score_format = check_score_format(args.score_format)
    batch = _positive(args.batch_size, "-b/--batch-size")
    k = _positive(args.k, "-k")
    estimator = model_file.load_model(args.network)
    if not hasattr(estimator, "recommend"):
        raise CommandError(f"{args.network} holds a {type(estimator).__name__}, which does not "
                           "recommend items")
    if args.device:
        estimator.set_params(device=args.device)
    _check_dataset_name(args.dataset, estimator)
    in_features = _index_within(args.input_features, estimator.n_features_in_, "input")
    out_features = _index_within(args.output_features, estimator.n_items_, "output")
    data = read_text(args.records, in_features, None, analog=args.type == "analog",
                     add_features=False)
    n = data.matrix.shape[0]
    if n == 0:
        raise CommandError(f"{args.records} holds no sample lines")
    X = _with_width(data.matrix, estimator.n_features_in_)
    labels = index_labels(out_features, estimator.n_items_)
    excluded = _exclusions(args.filter, out_features, data.samples, labels, n)
    k = min(k, sum(label is not None for label in labels))
    samples = index_labels(data.samples)
    with _text_output(args.output) as handle, console.bar(n, "sample", "predicting") as bar:
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            ids, scores = estimator.recommend(
                X[start:stop], k=k, exclude_seen=False, return_scores=True,
                exclude=None if excluded is None else excluded[start:stop])
            for row, (row_ids, row_scores) in enumerate(zip(ids, scores), start):
                keep = row_ids >= 0
                handle.write(format_recommendations(
                    samples[row], [labels[i] for i in row_ids[keep]], row_scores[keep],
                    score_format))
            bar.update(stop - start)
    console.say(f"wrote {args.output}: top {k} items for {n} samples")
    if data.dropped:
        console.say(f"  {data.dropped} input data point(s) skipped: feature not in "
                    f"{args.input_features}")
    return 0


def _check_dataset_name(name, estimator):
    if name is None:
        return
    expected = estimator.model_.spec.input_layer.dataset
    if f"{name}_input" != expected:
        hint = f"pass -d {expected[:-len('_input')]}" if (expected or "").endswith("_input") \
            else "leave -d out"
        raise CommandError(f"-d {name} refers to data set {name}_input, but the network's "
                           f"Input layer reads {expected!r}; {hint}")


def _index_within(path, width, what):
    from .io.text_format import read_index

    index = read_index(path)
    if not index:
        raise CommandError(f"{what} feature index {path} is empty")
    largest = max(index.values())
    if largest >= width:
        raise CommandError(f"{what} feature index {path} has index {largest}, but the "
                           f"network's {what} layer has {width} units; is it the index the "
                           "model was trained with?")
    return index


def _with_width(matrix, width):
    import scipy.sparse as sp

    return sp.csr_matrix((matrix.data, matrix.indices, matrix.indptr),
                         shape=(matrix.shape[0], width))


def _exclusions(filter_path, out_features, samples, labels, n):
    """Items never to recommend: each sample's filter items, plus output units
    without a label (nothing could be written for them)."""
    import numpy as np
    import scipy.sparse as sp

    from .io.text_format import read_text

    parts = []
    if filter_path:
        filt = read_text(filter_path, out_features, samples, add_features=False,
                         add_samples=False, duplicate_samples="merge").matrix
        parts.append(_with_width(filt, len(labels))[:n])
    unlabeled = np.flatnonzero([label is None for label in labels])
    if unlabeled.size:
        indptr = np.arange(n + 1, dtype=np.int64) * unlabeled.size
        parts.append(sp.csr_matrix((np.ones(n * unlabeled.size, np.float32),
                                    np.tile(unlabeled, n), indptr), shape=(n, len(labels))))
    if not parts:
        return None
    return sp.csr_matrix(sum(parts[1:], parts[0]))


# -- info ---------------------------------------------------------------------------------


def _add_info(subparsers):
    p = subparsers.add_parser(
        "info", allow_abbrev=False,
        help="versions, compute backends, GPUs and MPI",
        description="Print the versions of sparse_deep and its dependencies, the compute "
                    "backends this machine can use (GPUs included) and the MPI library.",
    )
    p.set_defaults(run=run_info)


def run_info(args):
    import platform

    print(f"sparse_deep {package_version()}")
    print(f"python {platform.python_version()} ({sys.executable})")
    for module in ("numpy", "scipy", "sklearn", "numba", "netCDF4", "mpi4py", "tqdm"):
        print(f"{module} {_module_version(module)}")
    print(f"netCDF-C library {_netcdf_library()}")
    print("backends:")
    print(f"  cpu: available ({_cpu_threads()})")
    print(f"  cuda: {_cuda_status()}")
    print(f"MPI: {_mpi_status()}")
    return 0


def _module_version(name):
    try:
        module = __import__(name)
    except Exception as error:  # an optional or broken install must not stop `info`
        return f"not available ({type(error).__name__}: {error})"
    return getattr(module, "__version__", "unknown version")


def _netcdf_library():
    try:
        import netCDF4

        return f"{netCDF4.__netcdf4libversion__}, HDF5 {netCDF4.__hdf5libversion__}"
    except Exception as error:
        return f"unknown ({error})"


def _cpu_threads():
    try:
        import numba

        return f"{numba.config.NUMBA_NUM_THREADS} numba threads, {os.cpu_count()} CPUs"
    except Exception as error:
        return f"numba unavailable: {error}"


def _cuda_status():
    from .backends import get_backend

    try:
        from numba import cuda

        available = cuda.is_available()
        gpus = [gpu.name.decode() if isinstance(gpu.name, bytes) else str(gpu.name)
                for gpu in cuda.gpus] if available else []
    except Exception as error:
        return f"unavailable (numba.cuda: {type(error).__name__}: {error})"
    if not available:
        return "unavailable (numba finds no CUDA GPU or driver)"
    try:
        get_backend("cuda")
        backend = "sparse_deep device='cuda' ready"
    except ValueError as error:
        backend = f"but sparse_deep cannot use it yet: {error}"
    return f"{len(gpus)} GPU(s): {', '.join(gpus)}; {backend}"


def _mpi_status():
    try:
        from mpi4py import MPI
    except Exception as error:
        return f"unavailable (mpi4py: {type(error).__name__}: {error})"
    try:
        vendor, version = MPI.get_vendor()
        library = " ".join(MPI.Get_library_version().strip().splitlines()[0].split())
        size = MPI.COMM_WORLD.Get_size()
        return (f"{vendor} {'.'.join(map(str, version))} ({library}); world size {size}, "
                f"this is rank {MPI.COMM_WORLD.Get_rank()}")
    except Exception as error:
        return f"mpi4py imported but MPI failed: {type(error).__name__}: {error}"


# -- entry point ------------------------------------------------------------------------


def build_parser():
    """The argument parser of ``sparse-deep`` with its four subcommands; its
    ``commands`` attribute maps each subcommand's name to its parser."""
    parser = argparse.ArgumentParser(
        prog=PROG, allow_abbrev=False,
        description="DSSTNE's workflow on sparse_deep: turn text data into NetCDF data sets "
                    "(generate), train a network from a DSSTNE JSON config (train), and write "
                    "top-k recommendations (predict). See docs/cli.md.",
    )
    parser.add_argument("--version", action=_VersionAction)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_generate(subparsers)
    _add_train(subparsers)
    _add_predict(subparsers)
    _add_info(subparsers)
    parser.commands = subparsers.choices
    return parser


def package_version():
    """The installed sparse_deep's version, or the package's own
    ``__version__`` when it runs from a source tree without being installed."""
    from importlib import metadata

    try:
        return metadata.version("sparse_deep")
    except metadata.PackageNotFoundError:
        import sparse_deep

        return getattr(sparse_deep, "__version__", "unknown")


class _VersionAction(argparse.Action):
    """``--version``: argparse's own action needs the version string when the
    parser is built, which would cost every command importlib.metadata."""

    def __init__(self, option_strings, dest):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                         nargs=0, help="print the version of sparse-deep and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{PROG} {package_version()}")
        parser.exit()


def _accept_ignored(parser, flag, metavar, why):
    """Accept DSSTNE's ``flag``, which has no effect here; when it is given,
    :func:`main` says so, and ``why``, on stderr."""
    dest = "ignored_" + flag.lstrip("-")
    parser.add_argument(flag, dest=dest, metavar=metavar,
                        help=f"accepted for DSSTNE compatibility and ignored: {why}")
    ignored = parser.get_default("ignored_flags") or ()
    parser.set_defaults(ignored_flags=(*ignored, (flag, dest, why)))


def _note_ignored_flags(args):
    if getattr(args, "quiet", False):
        return
    for flag, dest, why in getattr(args, "ignored_flags", ()):
        if getattr(args, dest) is not None:
            print(f"{PROG} {args.command}: note: {flag} is accepted for DSSTNE compatibility "
                  f"and ignored: {why}", file=sys.stderr)


class _Terminated(BaseException):
    """SIGTERM, raised where the process is so that every open write cleans up."""


def _raise_terminated(signum, frame):
    raise _Terminated


# The status of a command whose standard output was closed by its reader
# (`sparse-deep info | head -3`): 128 + SIGPIPE, as the shell reports for a
# program that the signal ended, so that `set -o pipefail` sees the output was
# cut short.
CLOSED_PIPE = 141


def main(argv=None):
    """Run ``sparse-deep`` with ``argv`` (default: the process's arguments).

    Returns
    -------
    int
        0 on success, 1 when the command fails (the reason goes to stderr as one
        line, never a traceback), 2 for a usage error, 130 when interrupted
        (SIGINT), 141 when standard output was closed by its reader (quietly),
        143 when terminated (SIGTERM). An interrupted or terminated command
        leaves no partial or temporary file.
    """
    try:
        try:
            return _run(argv)
        finally:
            # Here rather than at exit, so that a closed pipe is caught below.
            if sys.stdout is not None:
                sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()
        return CLOSED_PIPE


def _run(argv):
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command is None:
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        parser.print_help(sys.stderr)
        return 2
    if unknown:
        # argparse leaves these to the top-level parser, whose usage lists the
        # commands; the command's own usage lists the flags it takes.
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    _note_ignored_flags(args)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return _stopped(args, "interrupted", 130)
    except _Terminated:
        return _stopped(args, "terminated", 143)
    except BrokenPipeError:
        raise  # not a failure to report: main() ends quietly
    except Exception as error:  # noqa: BLE001 - a user must never see a traceback
        print(f"{PROG} {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def _discard_stdout():
    """Point the process's standard output at the null device: its reader is
    gone, and the interpreter's flush of what is still buffered would raise
    BrokenPipeError again at exit ("Exception ignored ..."). Only the
    process's own stdout, which is what the interpreter flushes; a caller's
    replacement (a test's capture) is left alone."""
    if sys.stdout is None or sys.stdout is not sys.__stdout__:
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):
        pass


def _stopped(args, how, code):
    print(f"{PROG} {args.command}: {how} (every file is written whole or not at all, so none "
          "is left half-written)", file=sys.stderr)
    return code


def _one_line(error):
    """The message of ``error`` for a user: its own text for the errors that
    explain themselves, a description for those that do not."""
    if isinstance(error, (ValueError, TypeError, OSError, FloatingPointError)):
        return str(error)
    if isinstance(error, MemoryError):
        return f"not enough memory for this command ({error or 'allocation failed'})"
    if isinstance(error, RecursionError):
        return "an input is nested too deeply to read (JSON nested hundreds of levels?)"
    return f"{type(error).__name__}: {error}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
