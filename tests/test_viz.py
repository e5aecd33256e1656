"""utils.viz: every function returns a labelled Figure; confusion_matrix counts correctly."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from utils.train import History
from utils.viz import confusion_matrix, plot_confusion_matrix, plot_history, show_images, show_top_losses


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def make_history(val_accs=(0.5, 0.7, 0.65)):
    return History([{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "train_acc": 0.5 + 0.1 * i, "val_loss": 1.2 / (i + 1),
                     "val_acc": acc, "lr": 1e-3, "seconds": 1.0, "images_per_second": 100.0}
                    for i, acc in enumerate(val_accs)])


def axis_labels(fig):
    return [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes]


# ---------------------------------------------------------------- confusion matrix
def test_confusion_matrix_counts_true_rows_predicted_columns():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 0, 2, 2])
    expected = torch.tensor([[1, 1, 0], [0, 2, 0], [1, 0, 2]])
    cm = confusion_matrix(labels, preds, num_classes=3)
    assert cm.dtype == torch.long and torch.equal(cm, expected)
    logits = nn.functional.one_hot(preds, 3).float()
    assert torch.equal(confusion_matrix(labels.numpy(), logits, 3), expected)  # logits and numpy accepted
    assert confusion_matrix([0, 1], [1, 1], num_classes=4).shape == (4, 4)
    assert torch.equal(confusion_matrix([0, 1], [1, 1]), torch.tensor([[0, 1], [0, 1]]))


def test_plot_confusion_matrix_titles_the_finding_and_annotates_counts():
    labels = [0, 0, 1, 1, 2, 2, 2]
    preds = [0, 1, 1, 1, 0, 2, 2]
    fig = plot_confusion_matrix(labels, preds, ["ants", "bees", "wasps"])
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert "accuracy 71.4%" in ax.get_title() and "7 images" in ax.get_title()
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(["1", "1", "0", "0", "2", "0", "1", "0", "2"])
    normalized = plot_confusion_matrix(labels, preds, ["ants", "bees", "wasps"], normalize=True)
    assert "67%" in [t.get_text() for t in normalized.axes[0].texts]  # wasps: 2 of 3 right


# ---------------------------------------------------------------- history curves
def test_plot_history_single_run():
    fig = plot_history(make_history())
    assert isinstance(fig, Figure)
    assert axis_labels(fig)[:2] == [("epoch", "loss (mean per image)"), ("epoch", "accuracy (%)")]
    assert "best val accuracy 70.0% (epoch 2)" in fig._suptitle.get_text()
    acc_lines = fig.axes[1].get_lines()
    assert [line.get_label() for line in acc_lines] == ["train", "val"]
    assert list(acc_lines[1].get_ydata()) == pytest.approx([50.0, 70.0, 65.0])


def test_plot_history_several_runs_and_other_metrics():
    runs = [make_history(), make_history((0.4, 0.45, 0.5))]
    fig = plot_history(runs, labels=["plain", "residual"])
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["plain train", "plain val", "residual train", "residual val"]
    assert isinstance(plot_history({"a": make_history()}, metrics=("acc", "lr")), Figure)
    rows = make_history().epochs
    for row in rows:
        row["val_loss"] = row["val_acc"] = None
    assert "final train loss" in plot_history(rows)._suptitle.get_text()
    with pytest.raises(ValueError):
        plot_history(runs, labels=["only one"])


# ---------------------------------------------------------------- images
@pytest.mark.parametrize("images", [
    torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8),  # uint8 NCHW
    torch.rand(5, 16, 16, 3),  # float NHWC
    torch.randint(0, 256, (5, 16, 16), dtype=torch.uint8),  # grayscale batch without channel dim
    np.random.default_rng(0).random((3, 16, 16)),  # one CHW image as numpy
    [torch.rand(1, 16, 16) for _ in range(3)],  # a list
])
def test_show_images_accepts_common_layouts(images):
    fig = show_images(images, ncols=4)
    assert isinstance(fig, Figure)
    shown = [ax.get_images()[0].get_array() for ax in fig.axes if ax.get_images()]
    assert shown and all(0.0 <= float(np.min(a)) and float(np.max(a)) <= 1.0 for a in shown)
    assert "images" in fig._suptitle.get_text() or "image" in fig._suptitle.get_text()


def test_show_images_denormalises_with_mean_and_std():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    original = torch.rand(2, 3, 8, 8)
    normalised = (original - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    fig = show_images(normalised, titles=["a", "b"], mean=mean, std=std)
    shown = fig.axes[0].get_images()[0].get_array()
    assert np.allclose(shown, original[0].permute(1, 2, 0).numpy(), atol=1e-5)
    assert fig.axes[0].get_title() == "a"


# ---------------------------------------------------------------- top losses
def test_show_top_losses_orders_confident_mistakes():
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    logits = torch.tensor([[5.0, 0], [0, 5], [0, 1], [3, 0], [0, 4], [2, 1]])  # wrong: 2 (p=.73), 3 (.95), 4 (.98), 5
    fig = show_top_losses(logits, (images, labels), ["cat", "dog"], k=3)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["dog / cat / 0.98", "cat / dog / 0.95", "dog / cat / 0.73"]
    assert "4 wrong of 6" in fig._suptitle.get_text()


def test_show_top_losses_runs_a_model_and_handles_no_mistakes():
    x = torch.rand(4, 2)
    y = torch.tensor([0, 1, 0, 1])

    class Oracle(nn.Module):
        def forward(self, inputs):
            return nn.functional.one_hot(torch.tensor([0, 1, 0, 1])[: len(inputs)], 2).float() * 10

    fig = show_top_losses(Oracle(), (x, y), ["a", "b"], device="cpu")
    assert isinstance(fig, Figure) and "no wrong predictions on 4 images" in fig._suptitle.get_text()
