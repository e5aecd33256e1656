"""Behaviour of utils.train and utils.inference on CPU with small synthetic data (Gaussian blobs, random
16x16 images), and the import graph of utils (no cycles). Feature extraction: tests/test_features.py."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import ast
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from utils import features, inference, train
from utils.inference import evaluate, predict

from synthetic import stripe_images, to_float
from utils.train import History, fit, fit_head, make_scheduler

CPU = "cpu"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny ops spend more time synchronising threads than computing, badly so on a busy 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- synthetic data and models
def blobs(n_per_class=100, num_classes=3, dim=2, spread=0.4, seed=0):
    """Linearly separable Gaussian blobs: class c centred at 3 * e_c."""
    g = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.eye(num_classes, dim)
    x = torch.cat([centres[c] + spread * torch.randn(n_per_class, dim, generator=g) for c in range(num_classes)])
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    return x, y


def tiny_cnn(num_classes=2, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, num_classes))


def mlp(dim=2, num_classes=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, 16), nn.ReLU(), nn.Linear(16, num_classes))


def quiet_fit(*args, **kwargs):
    kwargs.setdefault("device", CPU)
    kwargs.setdefault("progress", False)
    return fit(*args, **kwargs)


# ---------------------------------------------------------------- learning
def test_loss_decreases_on_tiny_cnn_with_uint8_images():
    x, y = stripe_images()
    history = quiet_fit(tiny_cnn(), (x, y), epochs=4, lr=1e-2, batch_size=32, batch_transform=to_float)
    losses = history["train_loss"]
    assert len(losses) == 4
    assert losses[-1] < losses[0]


def test_separable_blobs_reach_over_90_percent():
    x, y = blobs(seed=0)
    xv, yv = blobs(n_per_class=50, seed=1)
    history = quiet_fit(mlp(), (x, y), (xv, yv), epochs=10, lr=1e-2, batch_size=32)
    assert history.last()["val_acc"] > 0.9
    assert history.last()["train_acc"] > 0.9
    assert evaluate(mlp(seed=1), (xv, yv), device=CPU)["acc"] < 0.9  # not trivially true


def test_same_seed_gives_identical_history_on_cpu():
    x, y = stripe_images(n=96)
    runs = [quiet_fit(tiny_cnn(seed=3), (x, y), (x[:32], y[:32]), epochs=2, lr=3e-3, batch_size=16,
                      batch_transform=to_float, seed=7) for _ in range(2)]
    assert runs[0].without_timings() == runs[1].without_timings()
    assert runs[0].batch_losses == runs[1].batch_losses
    other = quiet_fit(tiny_cnn(seed=3), (x, y), epochs=2, lr=3e-3, batch_size=16, batch_transform=to_float, seed=8)
    assert other.batch_losses != runs[0].batch_losses  # the seed does change the shuffling


def test_generic_dataset_and_dataloader_inputs():
    x, y = blobs(n_per_class=40)

    class PlainDataset(Dataset):  # not tensor-backed: goes through a DataLoader
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return x[i], int(y[i])

    for data in (PlainDataset(), DataLoader(PlainDataset(), batch_size=20, shuffle=True)):
        history = quiet_fit(mlp(), data, data, epochs=8, lr=3e-2, batch_size=20)
        assert history.last()["val_acc"] > 0.9
    assert len(quiet_fit(mlp(), torch.utils.data.TensorDataset(x, y), epochs=1, batch_size=20).batch_lrs) == 6


def test_tensor_image_dataset_takes_the_fast_path():
    data = pytest.importorskip("utils.data")
    x, y = stripe_images(n=32)
    dataset = data.TensorImageDataset(x, y, classes=["vertical", "horizontal"])
    assert isinstance(inference._batches(dataset, 8, torch.device(CPU)), inference._TensorBatches)
    history = quiet_fit(tiny_cnn(), dataset, dataset, epochs=1, batch_size=8, batch_transform=to_float)
    assert len(history.batch_lrs) == 4 and history.last()["val_acc"] is not None
    dataset.transform = to_float  # a per-sample transform must run: back to a DataLoader
    assert isinstance(inference._batches(dataset, 8, torch.device(CPU)), inference._LoaderBatches)
    subset = torch.utils.data.Subset(data.TensorImageDataset(x, y, classes=["v", "h"]), [3, 1, 2])
    batches = inference._batches(subset, 8, torch.device(CPU))
    assert isinstance(batches, inference._TensorBatches) and torch.equal(batches.y, y[[3, 1, 2]])


# ---------------------------------------------------------------- schedules
@pytest.mark.parametrize("total_steps", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
def test_schedules_survive_very_short_runs(schedule, total_steps):
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    scheduler = make_scheduler(optimizer, schedule, total_steps=total_steps, warmup_steps=0)
    for _ in range(total_steps):
        assert 0 < optimizer.param_groups[0]["lr"] <= 0.1 + 1e-12
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
def test_param_groups_keep_their_lr_ratio(schedule):
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    optimizer = torch.optim.AdamW([{"params": a.parameters(), "lr": 1e-2}, {"params": b.parameters(), "lr": 1e-4}])
    scheduler = make_scheduler(optimizer, schedule, total_steps=50, warmup_steps=5)
    for _ in range(50):
        first, second = (group["lr"] for group in optimizer.param_groups)
        assert first == pytest.approx(100 * second, rel=1e-6)
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
def test_fit_with_param_groups_keeps_ratio_each_epoch(schedule):
    model = mlp()
    groups = [{"params": model[0].parameters(), "lr": 1e-3}, {"params": model[2].parameters(), "lr": 1e-2}]
    seen = []
    quiet_fit(model, blobs(n_per_class=20), epochs=3, optimizer=groups, schedule=schedule, batch_size=20,
              callbacks=lambda epoch, history, m: seen.append(history.last()["lr"]))
    assert len(seen) == 3
    optimizer = torch.optim.SGD(groups, lr=1.0)
    pairs = []
    quiet_fit(model, blobs(n_per_class=20), epochs=3, optimizer=optimizer, schedule=schedule, batch_size=20,
              callbacks=lambda e, h, m: pairs.append([group["lr"] for group in optimizer.param_groups]))
    assert len(pairs) == 3 and all(second == pytest.approx(10 * first) for first, second in pairs)


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
def test_warmup_starts_low_and_reaches_peak(schedule):
    peak = 1e-2
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=peak)
    scheduler = make_scheduler(optimizer, schedule, total_steps=100, warmup_steps=20)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] < 0.1 * peak
    assert all(later >= earlier for earlier, later in zip(lrs[:20], lrs[1:21]))  # rising during warm-up
    assert max(lrs) == pytest.approx(peak, rel=0.05)
    if schedule != "constant":
        assert lrs[-1] < 0.05 * peak  # annealed
    else:
        assert lrs[-1] == pytest.approx(peak)


def test_fit_warmup_epochs_and_second_fit_restarts_schedule():
    x, y = blobs(n_per_class=40)  # 120 samples / 20 = 6 steps per epoch
    model = mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    kwargs = dict(epochs=2, optimizer=optimizer, schedule="cosine", warmup_epochs=0.5, batch_size=20)
    first = quiet_fit(model, (x, y), **kwargs)
    assert first.batch_lrs[0] < 0.3e-2 and max(first.batch_lrs) == pytest.approx(1e-2)
    second = quiet_fit(model, (x, y), **kwargs)
    assert second.batch_lrs == pytest.approx(first.batch_lrs)
    optimizer.param_groups[0]["lr"] = 1e-3  # set by hand between runs: the new peak
    third = quiet_fit(model, (x, y), **kwargs)
    assert max(third.batch_lrs) == pytest.approx(1e-3)


def test_max_steps_per_epoch_caps_training_and_validation():
    calls = {"n": 0}

    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def forward(self, x):
            calls["n"] += 1
            return self.net(x)

    x, y = blobs(n_per_class=100)  # 300 samples: 30 steps of 10
    history = quiet_fit(Counting(), (x, y), (x, y), epochs=2, batch_size=10, max_steps_per_epoch=3)
    assert len(history.batch_lrs) == len(history.batch_losses) == 6
    assert calls["n"] == 2 * (3 + 3)  # 3 training and at most 3 validation batches per epoch
    assert history.last()["images_per_second"] > 0 and history.last()["seconds"] > 0


# ---------------------------------------------------------------- transforms, freezing, checkpoints
def test_batch_transform_turns_uint8_into_floats_for_train_and_val():
    seen = []

    class NeedsFloat(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_cnn()

        def forward(self, x):
            seen.append((x.dtype, float(x.max())))
            return self.net(x)

    x, y = stripe_images(n=32)
    calls = []

    def transform(batch):
        calls.append(batch.dtype)
        return batch.float() / 255

    history = quiet_fit(NeedsFloat(), (x, y), (x, y), epochs=1, batch_size=16, batch_transform=transform)
    assert calls and all(dtype == torch.uint8 for dtype in calls)
    assert all(dtype == torch.float32 and top <= 1.0 for dtype, top in seen)
    assert history.last()["val_acc"] is not None
    val_transform_calls = []
    quiet_fit(NeedsFloat(), (x, y), (x, y), epochs=1, batch_size=16, batch_transform=transform,
              val_batch_transform=lambda b: val_transform_calls.append(1) or b.float() / 255)
    assert len(val_transform_calls) == 1  # 32 images in one validation batch of 32


def test_frozen_parameters_do_not_move_even_with_weight_decay():
    x, y = stripe_images(n=64)
    for optimizer in ("adamw", "sgd"):
        model = tiny_cnn()
        frozen = [model[0], model[1]]  # first conv and its BatchNorm
        for module in frozen:
            module.requires_grad_(False)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        quiet_fit(model, (x, y), epochs=2, lr=1e-2, batch_size=16, optimizer=optimizer, weight_decay=0.1,
                  batch_transform=to_float, freeze_bn_stats=True)
        after = model.state_dict()
        for key in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
            assert torch.equal(before[key], after[key]), f"{optimizer}: {key} moved"
        assert not torch.equal(before["8.weight"], after["8.weight"])


def test_frozen_batchnorm_statistics_move_without_freeze_bn_stats():
    x, y = stripe_images(n=32)
    model = tiny_cnn()
    model[1].requires_grad_(False)
    before = model[1].running_mean.clone()
    quiet_fit(model, (x, y), epochs=1, batch_size=16, batch_transform=to_float)
    assert not torch.equal(before, model[1].running_mean)  # requires_grad=False alone is not enough


def test_unfreezing_in_a_callback_trains_those_parameters_next_epoch():
    x, y = blobs(n_per_class=30)
    model = mlp()
    model[0].requires_grad_(False)
    snapshots = []

    def unfreeze_after_first(epoch, history, m):
        snapshots.append(m[0].weight.detach().clone())
        if epoch == 1:
            m[0].requires_grad_(True)

    quiet_fit(model, (x, y), epochs=2, batch_size=30, callbacks=unfreeze_after_first)
    assert len(snapshots) == 2 and not torch.equal(snapshots[0], snapshots[1])


def test_checkpoint_best_restores_best_weights(tmp_path):
    # validation labels are the training labels shuffled by one class: the better the fit, the worse val gets
    x, y = blobs(n_per_class=60)
    y_val = (y + 1) % 3
    states = {}

    def remember(epoch, history, model):
        states[epoch] = {k: v.clone() for k, v in model.state_dict().items()}

    path = tmp_path / "best.pt"
    model = mlp()
    history = quiet_fit(model, (x, y), (x, y_val), epochs=4, lr=3e-3, batch_size=30, schedule="constant",
                        callbacks=remember, checkpoint=path, restore_best=True)
    best = history.best()["epoch"]
    assert best == history.best_epoch == history.restored_epoch
    assert best < 4, history
    for key, value in model.state_dict().items():
        assert torch.equal(value, states[best][key])
    saved = torch.load(path, weights_only=True)
    assert all(torch.equal(saved[k], states[best][k]) for k in saved)
    assert not list(tmp_path.glob("*.tmp"))

    model = mlp()
    quiet_fit(model, (x, y), (x, y_val), epochs=4, lr=3e-3, batch_size=30, schedule="constant", callbacks=remember)
    assert torch.equal(model[0].weight, states[4]["0.weight"])  # restore_best=False keeps the last weights


# ---------------------------------------------------------------- callbacks, evaluation, misc
def test_callbacks_called_each_epoch_and_can_stop():
    calls = []

    class Recorder:
        def on_epoch_begin(self, epoch, model):
            calls.append(("begin", epoch))

        def on_epoch_end(self, epoch, history, model):
            calls.append(("end", epoch, len(history)))

    data = blobs(n_per_class=10)
    quiet_fit(mlp(), data, epochs=3, batch_size=10, callbacks=[Recorder()])
    assert calls == [("begin", 1), ("end", 1, 1), ("begin", 2), ("end", 2, 2), ("begin", 3), ("end", 3, 3)]
    history = quiet_fit(mlp(), data, epochs=5, batch_size=10, callbacks=lambda epoch, h, m: epoch == 2)
    assert len(history) == 2


def test_evaluate_and_predict_match_and_restore_modes():
    x, y = blobs(n_per_class=20)
    model = mlp()
    model.train()
    logits, labels = predict(model, (x, y), device=CPU, batch_size=7)
    assert logits.shape == (60, 3) and logits.dtype == torch.float32 and logits.device.type == "cpu"
    assert torch.equal(labels, y)
    result = evaluate(model, (x, y), device=CPU, batch_size=7)
    assert result["n"] == 60
    assert result["acc"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert result["loss"] == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    assert model.training  # modes restored


def test_regression_loss_without_accuracy_and_gradient_clipping():
    x = torch.randn(64, 3)
    target = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    torch.manual_seed(0)
    history = quiet_fit(nn.Linear(3, 1), (x, target), (x, target), epochs=5, lr=5e-2, batch_size=16,
                        loss_fn=nn.functional.mse_loss, clip_grad=1.0, schedule="constant")
    assert history.last()["train_acc"] is None and history.last()["val_acc"] is None
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history.best()["epoch"] == min(history, key=lambda row: row["val_loss"])["epoch"]


def test_non_finite_loss_raises_a_readable_error():
    with pytest.raises(FloatingPointError, match="lower lr"):
        quiet_fit(mlp(), blobs(n_per_class=10), epochs=1, batch_size=10,
                  loss_fn=lambda out, y: out.sum() * float("nan"))


def test_bf16_autocast_and_channels_last_on_cpu_run():
    """The CUDA defaults (mixed precision, NHWC layout), exercised on CPU."""
    x, y = stripe_images(n=32)
    model = tiny_cnn()
    history = quiet_fit(model, (x, y), (x, y), epochs=2, lr=1e-2, batch_size=16, amp="bf16", channels_last=True,
                        batch_transform=to_float)
    assert all(math.isfinite(loss) for loss in history["train_loss"] + history["val_loss"])
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    logits, _ = predict(model, (x, y), batch_transform=to_float, device=CPU, amp="bf16")
    assert logits.dtype == torch.float32


# ---------------------------------------------------------------- History
def test_history_table_and_accessors():
    history = History([
        {"epoch": 1, "train_loss": 1.23456, "train_acc": 0.5, "val_loss": 1.1, "val_acc": 0.61234, "lr": 1e-3,
         "seconds": 2.04, "images_per_second": 1234.4},
        {"epoch": 2, "train_loss": 0.5, "train_acc": 0.9, "val_loss": None, "val_acc": None, "lr": 5e-4,
         "seconds": 1.96, "images_per_second": 1300.0},
    ])
    table = history.as_table()
    lines = table.splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time", "(s)",
                                "images/s"]
    assert lines[1].split() == ["1", "1.2346", "50.00%", "1.1000", "61.23%", "1.00e-03", "2.0", "1234"]
    assert lines[2].split()[3:5] == ["-", "-"]
    assert len({len(line) for line in lines}) == 1  # aligned columns
    assert repr(history) == table
    assert history.best()["epoch"] == 1 and history.last()["epoch"] == 2
    assert history.best("train_loss")["epoch"] == 2
    assert history["train_acc"] == [0.5, 0.9] and len(history) == 2
    assert repr(History()) == "History(no epochs)"


def test_history_plot_returns_a_figure():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    history = quiet_fit(mlp(), blobs(n_per_class=10), blobs(n_per_class=5, seed=1), epochs=2, batch_size=10)
    fig = history.plot()
    assert isinstance(fig, Figure)
    plt.close(fig)


def test_fit_head_on_features():
    x, y = blobs(n_per_class=50, dim=16, num_classes=4, seed=0)
    xv, yv = blobs(n_per_class=20, dim=16, num_classes=4, seed=1)
    head, history = fit_head(x, y, xv, yv, epochs=10, lr=5e-2, device=CPU)
    assert isinstance(head, nn.Linear) and head.in_features == 16 and head.out_features == 4
    assert history.last()["val_acc"] > 0.9
    head_full_batch, history_full = fit_head(x, y, epochs=3, batch_size=None, device=CPU)
    assert len(history_full.batch_lrs) == 3


# ---------------------------------------------------------------- module layout
UTILS = Path(__file__).resolve().parent.parent / "utils"


def utils_imports(folder: Path = UTILS) -> dict[str, set[str]]:
    """module -> the modules of ``folder`` it imports, at the top or inside functions (parsed, not run)."""
    names = {path.stem for path in folder.glob("*.py")} - {"__init__"}
    graph = {}
    for name in names:
        found = set()
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:        # from .x import y, from . import x
                targets = [node.module] if node.module else [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "utils":
                targets = [alias.name for alias in node.names]              # from utils import x
            elif isinstance(node, ast.ImportFrom) and node.level == 0:     # from utils.x import y
                targets = [node.module.removeprefix("utils.")] if node.module.startswith("utils.") else []
            elif isinstance(node, ast.Import):                              # import utils.x
                targets = [alias.name.removeprefix("utils.") for alias in node.names if alias.name.startswith("utils.")]
            else:
                continue
            found.update(target.split(".")[0] for target in targets)
        graph[name] = (found & names) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None (depth-first search)."""
    done, path = set(), []

    def visit(module):
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        path.append(module)
        for imported in sorted(graph[module]):
            cycle = visit(imported)
            if cycle:
                return cycle
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module)
        if cycle:
            return cycle
    return None


def test_utils_import_graph_has_no_cycle():
    graph = utils_imports()
    assert {"train", "viz", "features", "inference", "data"} <= set(graph)
    assert graph["viz"] == {"inference"} and "train" not in graph["features"] | graph["inference"]
    assert {"inference", "features", "viz"} <= graph["train"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_check_sees_every_import_form(tmp_path):
    sources = {"a": "def f():\n    from .b import g\n",                    # inside a function
               "b": "import utils.c\n", "c": "from utils import d\n", "d": "from utils.a import f\n",
               "e": "from . import a\nimport os\n"}
    for name, source in sources.items():
        (tmp_path / f"{name}.py").write_text(source)
    graph = utils_imports(tmp_path)
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"d"}, "d": {"a"}, "e": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "d", "a"]
    assert find_cycle({**graph, "d": set()}) is None


def test_names_the_notebooks_import_from_utils_train_still_work():
    # kept for the notebooks until their imports move to utils.features / utils.inference
    assert train.extract_features is features.extract_features
    assert train.feature_cache_path is features.feature_cache_path
    assert train.evaluate is inference.evaluate and train.predict is inference.predict
    for name in ("History", "fit", "fit_head", "make_scheduler", "_cpu_state_dict", "_put_frozen_batchnorm_in_eval",
                 "ONECYCLE_DEFAULT_WARMUP"):
        assert hasattr(train, name), name
