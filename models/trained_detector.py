"""A YOLOv8-style detector trained in seconds on CPU on synthetic shapes, for accuracy claims on detectors (issue 9).

- ``shapes_dataset``: 64x64 images on a plain grey-ish canvas with pixel noise, 1-3 objects each (filled
  rectangles, circles and triangles, class = shape, in one of five colours, 12-30 px wide), with their boxes (x1, y1,
  x2, y2 in pixels) and classes.
- ``train_detector``: ``detectors.YOLO`` (version 8 or 11, width ``w``) trained with a simplified YOLO loss:
  centre sampling (an anchor point is positive for the smallest ground-truth box that contains it within 2.5 strides
  of the box centre, on every level), binary cross-entropy on the class scores of every anchor (positives target
  their class, every other score 0), and for positives an L1 loss on the left/top/right/bottom distances (in stride
  units, decoded through the DFL expectation exactly as the exported head does) plus 1 - IoU. Exported with the
  model's own head, so the ONNX output is ultralytics' [B, 4 + classes, anchors] (xywh pixels, sigmoid scores).
- ``detect`` decodes that output in numpy (score threshold, per-class greedy NMS); ``box_f1`` matches detections to
  references (greedy by score, same class, IoU >= 0.5).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from onnxprune.runtime import make_session

from . import ModelSpec, export
from .detectors import NUM_CLASSES, REG_MAX, YOLO

SIZE = 64
COLOURS = np.array([[220, 40, 40], [40, 180, 60], [50, 80, 220], [230, 200, 40], [200, 60, 200]], np.float32) / 255


@dataclass(frozen=True)
class Shapes:
    """Images float32 [N, 3, SIZE, SIZE] in [0, 1]; per image, boxes float32 [k, 4] (x1, y1, x2, y2) and classes
    int64 [k] (0 rectangle, 1 circle, 2 triangle)."""

    images: np.ndarray
    boxes: list[np.ndarray]
    classes: list[np.ndarray]


def shapes_dataset(count: int, seed: int = 0, size: int = SIZE) -> Shapes:
    """``count`` synthetic images (seeded): 1-3 non-overlapping-ish filled shapes on a noisy plain canvas."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images, boxes, classes = [], [], []
    for _ in range(count):
        image = np.ones((3, size, size), np.float32) * rng.uniform(0.3, 0.7, (3, 1, 1)).astype(np.float32)
        found, kinds = [], []
        for _ in range(int(rng.integers(1, 4))):
            for _attempt in range(20):
                w, h = rng.uniform(12, 30, 2)
                x1, y1 = rng.uniform(0, size - w), rng.uniform(0, size - h)
                box = np.array([x1, y1, x1 + w, y1 + h], np.float32)
                if all(_iou(box, other) < 0.1 for other in found):
                    break
            else:
                continue
            kind = int(rng.integers(NUM_CLASSES))
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            if kind == 0:
                mask = (xx >= box[0]) & (xx <= box[2]) & (yy >= box[1]) & (yy <= box[3])
            elif kind == 1:
                mask = ((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2 <= 1
            else:  # apex at the top centre, base along the bottom
                t = (yy - box[1]) / h
                mask = (t >= 0) & (t <= 1) & (np.abs(xx - cx) <= t * w / 2)
            image[:, mask] = COLOURS[rng.integers(len(COLOURS))][:, None]
            found.append(box)
            kinds.append(kind)
        image += rng.normal(0, 0.04, image.shape).astype(np.float32)
        images.append(np.clip(image, 0, 1))
        boxes.append(np.array(found, np.float32).reshape(-1, 4))
        classes.append(np.array(kinds, np.int64))
    return Shapes(np.stack(images), boxes, classes)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(box_iou(a[None], b[None])[0, 0])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a [n, 4] and b [m, 4] (x1, y1, x2, y2) -> [n, m]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


# ------------------------------------------------------------------------------------------------ training
def _raw_head(model: YOLO, x: torch.Tensor):
    """(box logits [B, 4 * REG_MAX, A], class logits [B, nc, A], anchor points [A, 2] in pixels, strides [A]) of
    ``model`` on ``x``: YOLO.forward up to the head, without the decoding."""
    feats, head = model.features(x), model.detect
    b = x.shape[0]
    box = torch.cat([cv2(f).view(b, 4 * REG_MAX, -1) for f, cv2 in zip(feats, head.cv2)], 2)
    cls = torch.cat([cv3(f).view(b, head.nc, -1) for f, cv3 in zip(feats, head.cv3)], 2)
    points, strides = [], []
    for f, stride in zip(feats, head.strides):
        h, w = f.shape[2:]
        yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        points.append(torch.stack((xx, yy), -1).view(-1, 2) * stride)
        strides.append(torch.full((h * w,), float(stride)))
    return box, cls, torch.cat(points), torch.cat(strides)


def _assign(points: np.ndarray, strides: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Centre sampling: for every anchor point the index of the smallest box that contains it within 2.5 strides
    of the box centre, else -1."""
    if not len(boxes):
        return np.full(len(points), -1)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = ((points[:, None] > boxes[None, :, :2]) & (points[:, None] < boxes[None, :, 2:])).all(2)
    near = (np.abs(points[:, None] - centre[None]) < 2.5 * strides[:, None, None]).all(2)
    area = np.where(inside & near, np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)[None], np.inf)
    return np.where(np.isfinite(area).any(1), area.argmin(1), -1)


def _loss(model: YOLO, images: torch.Tensor, boxes: list[np.ndarray], classes: list[np.ndarray]) -> torch.Tensor:
    box, cls, points, strides = _raw_head(model, images)
    pts, sts = points.numpy(), strides.numpy()
    target_cls = torch.zeros_like(cls)
    rows, anchors, target_boxes = [], [], []
    for k, (bx, cl) in enumerate(zip(boxes, classes)):
        owner = _assign(pts, sts, bx)
        pos = np.nonzero(owner >= 0)[0]
        target_cls[k, torch.from_numpy(cl[owner[pos]]), torch.from_numpy(pos)] = 1.0
        rows += [k] * len(pos)
        anchors.append(pos)
        target_boxes.append(bx[owner[pos]])
    positives = max(len(rows), 1)
    loss = nn.functional.binary_cross_entropy_with_logits(cls, target_cls, reduction="sum") / positives
    if rows:
        rows_t, anchors_t = torch.tensor(rows), torch.from_numpy(np.concatenate(anchors))
        target = torch.from_numpy(np.concatenate(target_boxes))
        bins = box[rows_t, :, anchors_t].view(-1, 4, REG_MAX).softmax(2) @ torch.arange(REG_MAX, dtype=torch.float)
        stride, point = strides[anchors_t, None], points[anchors_t]
        want = torch.cat((point - target[:, :2], target[:, 2:] - point), 1) / stride
        loss = loss + nn.functional.l1_loss(bins, want.clamp(0, REG_MAX - 1.01), reduction="sum") / positives
        pred = torch.cat((point - bins[:, :2] * stride, point + bins[:, 2:] * stride), 1)
        lt, rb = torch.maximum(pred[:, :2], target[:, :2]), torch.minimum(pred[:, 2:], target[:, 2:])
        inter = (rb - lt).clamp(min=0).prod(1)
        union = (pred[:, 2:] - pred[:, :2]).prod(1) + (target[:, 2:] - target[:, :2]).prod(1) - inter
        loss = loss + 2.0 * (1 - inter / union).sum() / positives
    return loss


@dataclass(frozen=True)
class TrainedDetector:
    """A trained, exported detector: ``path``, its training and held-out data, and the exported model's box F1
    against the ground truth on the held-out images (onnxruntime)."""

    name: str
    path: str
    train: Shapes
    test: Shapes
    f1: float


def train_detector(out_dir: str | os.PathLike, exporter: str = "torchscript", version: int = 8, w: int = 8,
                   images: int = 384, epochs: int = 12, batch: int = 32, seed: int = 0) -> TrainedDetector:
    """Train ``detectors.YOLO(version, w)`` on ``shapes_dataset(images)`` (seeded; AdamW, one cycle) and export it
    to ``out_dir/yolo<version>_trained.<exporter>.onnx``; its box F1 is measured on 96 held-out images."""
    train, test = shapes_dataset(images, seed=seed), shapes_dataset(96, seed=seed + 1000)
    torch.manual_seed(seed)
    model = YOLO(version, w)
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=1e-4)
    steps = epochs * ((images + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=4e-3, total_steps=steps, pct_start=0.15)
    order_rng = np.random.default_rng(seed)
    model.train()
    for _ in range(epochs):
        order = order_rng.permutation(images)
        for start in range(0, images, batch):
            idx = order[start:start + batch]
            optimizer.zero_grad()
            loss = _loss(model, torch.from_numpy(train.images[idx]), [train.boxes[i] for i in idx],
                         [train.classes[i] for i in idx])
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    name = f"yolo{version}_trained"
    os.makedirs(out_dir, exist_ok=True)
    axes = {"x": {0: "batch"}, "output": {0: "batch"}}
    spec = ModelSpec(name, lambda: model, lambda batch=2: (torch.from_numpy(test.images[:batch]),), ("x",), axes,
                     "detector")
    path = export(spec, os.path.join(os.fspath(out_dir), f"{name}.{exporter}.onnx"), exporter, keep_bn=True)
    found = detect(run(path, test.images))
    return TrainedDetector(name, path, train, test, box_f1(found, list(zip(test.boxes, test.classes))))


# ------------------------------------------------------------------------------------------------ decoding
def run(model, images: np.ndarray, batch: int = 32) -> np.ndarray:
    """The model's raw output [N, 4 + classes, anchors] on ``images`` (onnxruntime, CPU)."""
    session = make_session(model, "cpu")
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: images[k:k + batch]})[0] for k in range(0, len(images), batch)])


def detect(output: np.ndarray, conf: float = 0.25, iou: float = 0.5,
           max_det: int = 20) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Decode ultralytics' output [N, 4 + classes, anchors] (xywh pixels, sigmoid scores): per image (boxes [k, 4]
    x1y1x2y2, scores [k], classes [k]) above ``conf`` after per-class greedy NMS at ``iou``, best first."""
    found = []
    for out in output:
        xywh, scores = out[:4].T, out[4:].T
        cls, score = scores.argmax(1), scores.max(1)
        keep = score > conf
        xyxy = np.concatenate((xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2), 1)[keep]
        cls, score = cls[keep], score[keep]
        chosen = []
        for k in np.argsort(-score):
            if all(cls[j] != cls[k] or _iou(xyxy[j], xyxy[k]) < iou for j in chosen):
                chosen.append(k)
            if len(chosen) == max_det:
                break
        chosen = np.array(chosen, np.int64)
        found.append((xyxy[chosen].reshape(-1, 4), score[chosen], cls[chosen]))
    return found


def box_f1(found: list, references: list, iou: float = 0.5) -> float:
    """F1 of detections ``found`` (per image: boxes, scores, classes, as ``detect`` gives) against ``references``
    (per image: boxes, classes; ground truth or another model's detections): a detection matches the best-IoU
    unmatched reference of its class with IoU >= ``iou``, detections taken best score first."""
    hits = predicted = wanted = 0
    for (boxes, scores, classes), reference in zip(found, references):
        ref_boxes, ref_classes = reference[0], reference[-1]
        predicted, wanted = predicted + len(boxes), wanted + len(ref_boxes)
        if not len(boxes) or not len(ref_boxes):
            continue
        overlap = box_iou(boxes, ref_boxes)
        taken = np.zeros(len(ref_boxes), bool)
        for k in np.argsort(-scores):
            candidates = np.where((ref_classes == classes[k]) & ~taken, overlap[k], 0.0)
            best = int(candidates.argmax())
            if candidates[best] >= iou:
                taken[best] = True
                hits += 1
    return 2 * hits / max(predicted + wanted, 1)
