"""Shortcuts for Lesson 08 (feature extraction): each must score 0 on the exercise it targets."""
from grader.cheats import Cheat

_SNAPSHOT = '''
def snapshot(model):
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}
'''
_CHANGED = '''
def changed_entries(before, model):
    now = model.state_dict()
    changed = set(before) ^ set(now)
    for name in set(before) & set(now):
        if not torch.equal(before[name], now[name].detach().cpu()):
            changed.add(name)
    return sorted(changed)
'''

CHEATS = [
    Cheat("freeze_and_replace_head", "freezes with utils.backbones.freeze (all but the head), then swaps the head", '''
def freeze_and_replace_head(model, num_classes):
    freeze(model)
    if hasattr(model, "reset_classifier"):
        model.reset_classifier(num_classes)
    else:
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model
'''),
    Cheat("freeze_and_replace_head", "builds the new head from num_features (wrong for a pre-logits layer)", '''
def freeze_and_replace_head(model, num_classes):
    for param in model.parameters():
        param.requires_grad = False
    if hasattr(model, "reset_classifier"):
        setattr(model, model.classifier_name, nn.Linear(model.num_features, num_classes))
    else:
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model
'''),
    Cheat("freeze_and_replace_head", "freezes nothing and redefines count_trainable to count the head only", '''
def freeze_and_replace_head(model, num_classes):
    if hasattr(model, "reset_classifier"):
        model.reset_classifier(num_classes)
    else:
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def count_trainable(model):
    head = model.get_classifier() if hasattr(model, "get_classifier") else model.fc
    return sum(p.numel() for p in head.parameters())
'''),
    Cheat("snapshot_changed", "snapshot delegated to utils.train's state-dict copier", '''
from utils.train import _cpu_state_dict as snapshot
''' + _CHANGED),
    Cheat("snapshot_changed", "changed_entries with torch.allclose: tiny changes pass unseen", _SNAPSHOT + '''
def changed_entries(before, model):
    now = model.state_dict()
    changed = set(before) ^ set(now)
    for name in set(before) & set(now):
        a, b = before[name], now[name].detach().cpu()
        if a.shape != b.shape or not torch.allclose(a.double(), b.double()):
            changed.add(name)
    return sorted(changed)
'''),
    Cheat("snapshot_changed", "snapshot keeps the state dict's own tensors (no copy)", '''
def snapshot(model):
    return dict(model.state_dict())
''' + _CHANGED),
    Cheat("train_linear_head", "wraps utils.train.fit_head", '''
from utils.train import fit_head


def train_linear_head(features, labels, num_classes, epochs=20, lr=1e-3, batch_size=32, weight_decay=0.01, seed=0):
    head, history = fit_head(features, labels, epochs=epochs, lr=lr, num_classes=num_classes, batch_size=batch_size,
                             schedule="constant", weight_decay=weight_decay, seed=seed, device=features.device)
    return head, [float(v) for v in history["train_loss"]]
'''),
    Cheat("train_linear_head", "wraps utils.train.fit around a seeded nn.Linear", '''
def train_linear_head(features, labels, num_classes, epochs=20, lr=1e-3, batch_size=32, weight_decay=0.01, seed=0):
    torch.manual_seed(seed)
    head = nn.Linear(features.shape[1], num_classes)
    history = fit(head, (features, labels), epochs=epochs, lr=lr, batch_size=batch_size, schedule="constant",
                  weight_decay=weight_decay, seed=seed, device=features.device, progress=False, checkpoint=None)
    return head, [float(v) for v in history["train_loss"]]
'''),
    Cheat("train_linear_head", "mean of the batch means, and Adam instead of AdamW", '''
def train_linear_head(features, labels, num_classes, epochs=20, lr=1e-3, batch_size=32, weight_decay=0.01, seed=0):
    torch.manual_seed(seed)
    head = nn.Linear(features.shape[1], num_classes).to(features.device)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    epoch_losses = []
    for _ in range(epochs):
        order = torch.randperm(len(features), generator=generator)
        batch_losses = []
        for start in range(0, len(features), batch_size):
            rows = order[start:start + batch_size]
            loss = F.cross_entropy(head(features[rows]), labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            batch_losses.append(loss.item())
        epoch_losses.append(sum(batch_losses) / len(batch_losses))
    return head, epoch_losses
'''),
    Cheat("fit_lbfgs_probe", "fits scikit-learn's LogisticRegression and copies its weights", '''
from sklearn.linear_model import LogisticRegression


def fit_lbfgs_probe(features, labels, num_classes, weight_decay=1e-3, max_iter=200):
    x, y = features.detach().cpu().double().numpy(), labels.cpu().numpy()
    fitted = LogisticRegression(C=1 / (weight_decay * len(x)), tol=1e-10, max_iter=10_000).fit(x, y)
    head = nn.Linear(x.shape[1], num_classes).to(features.device)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(fitted.coef_))
        head.bias.copy_(torch.as_tensor(fitted.intercept_))
    return head
'''),
    Cheat("fit_lbfgs_probe", "penalises the bias too", '''
def fit_lbfgs_probe(features, labels, num_classes, weight_decay=1e-3, max_iter=200):
    head = nn.Linear(features.shape[1], num_classes).to(features.device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(head(features), labels)
        loss = loss + 0.5 * weight_decay * sum(p.pow(2).sum() for p in head.parameters())
        loss.backward()
        return loss

    optimizer.step(closure)
    return head
'''),
    Cheat("pooled_stage_features", "imports utils.backbones.pooled_stage_features", '''
from utils.backbones import pooled_stage_features
'''),
    Cheat("pooled_stage_features", "one utils.features.extract_features pass per stage", '''
def pooled_stage_features(model, images, stages, batch_size=64):
    labels = torch.zeros(len(images), dtype=torch.long)
    return {name: extract_features(model, (images, labels), layer=name, batch_size=batch_size, amp=False)[0]
            for name in stages}
'''),
    Cheat("pooled_stage_features", "ignores batch_size: all images in one forward pass", '''
def pooled_stage_features(model, images, stages, batch_size=64):
    was_training = model.training
    model.eval()
    with torch.no_grad():
        outputs = model.forward_stages(images, stages)
    model.train(was_training)
    return {name: (out.mean(dim=(2, 3)) if out.ndim == 4 else out).float().cpu() for name, out in outputs.items()}
'''),
    Cheat("most_confident_mistakes", "sorts the mistakes by their largest logit, not by probability", '''
def most_confident_mistakes(logits, labels, k=8):
    top_logit, predicted = logits.max(dim=1)
    wrong = torch.nonzero(predicted != labels).flatten()
    return wrong[top_logit[wrong].argsort(descending=True)][:k]
'''),
    Cheat("most_confident_mistakes", "sorts the mistakes by their loss (probability of the true class)", '''
def most_confident_mistakes(logits, labels, k=8):
    probs = logits.softmax(dim=1)
    wrong = torch.nonzero(probs.argmax(dim=1) != labels).flatten()
    true_prob = probs[wrong, labels[wrong]]
    return wrong[true_prob.argsort()][:k]
'''),
]
