"""Image-quality metrics of pose-guided person generation: the paper's and the field's protocols.

Classic protocol of the paper (the authors' ``test.py`` and ``ssd_score/compute_ssd_score.py``): SSIM,
mask-SSIM, IS, mask-IS, DS, plus the printed L1. Modern protocol of the later literature (e.g. Zhu et al.
CVPR 2019, Ren et al. CVPR 2020): LPIPS (AlexNet) and FID (Inception pool3, real statistics from the
training images). Plus ``ds_hog``, an offline stand-in for DS.

Image conventions here: the classic metrics work on what the reference scores, **uint8 arrays (N, H, W, 3)**
as the PNG files store them; :func:`deformgan.images.to_uint8` converts generator outputs.
LPIPS takes (B,3,H,W) floats in [-1, 1]. Per-image functions return one score per image (numpy (N,));
callers average over pairs.

Pretrained networks are never downloaded and never replaced by random ones: every loader goes through
:func:`deformgan.pretrained.find_weights`, which raises :class:`~deformgan.pretrained.MissingWeightsError`
naming the file. A metric that cannot run in this environment for another reason raises
:class:`MetricUnavailable`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from skimage.metrics import structural_similarity
from torch import nn

from deformgan.errors import InputError
from deformgan.pretrained import find_weights, hub_checkpoints_holding, load_state_dict

# Weights files (their canonical names, so a file copied from a torch hub cache is found as is).
INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
SSD_WEIGHTS = "ssd300_vgg16_coco-b556d3b4.pth"
SSD_URL = "https://download.pytorch.org/models/ssd300_vgg16_coco-b556d3b4.pth"

IS_SPLITS = 10
COCO_PERSON = 1  # torchvision's COCO category index of "person"

# HOG people detector protocol (ours; documented in docs/evaluation.md): images are resized so that their
# height is 256 px (Market 64x128 -> 128x256), then a 32 px replicated border is added on every side,
# because OpenCV's detector was trained on 64x128 windows with a 16 px context margin around the person,
# whereas Market and DeepFashion crops are tight. On the 100 real Market test targets of shared/data this
# finds a person in 87 % of the images, against 0 % at native size and 4 % upscaled without the border.
HOG_HEIGHT = 256
HOG_BORDER = 32


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed in this environment (missing package, incompatible library version)."""


# ----------------------------------------------------------------------------------------------
# Conversions and checks


def check_uint8_images(name: str, images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"{name}: expected uint8 images (N,H,W,3), got {images.dtype} {images.shape}")
    return images


def _check_same_shape(generated: np.ndarray, target: np.ndarray) -> None:
    if generated.shape != target.shape:
        raise InputError(f"generated {generated.shape} and target {target.shape} images differ in shape")


def apply_mask(images: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 (N,H,W,3) x bool (N,H,W) -> uint8 images, background set to 0 (the reference's image * mask)."""
    images = check_uint8_images("images", images)
    mask = np.asarray(mask)
    if mask.shape != images.shape[:3]:
        raise InputError(f"mask: expected shape {images.shape[:3]}, got {mask.shape}")
    return images * mask[..., None].astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# SSIM, mask-SSIM, L1 (the authors' test.py)


def ssim(generated: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-pair SSIM of the paper's protocol -> float64 (N,).

    generated, target: uint8 (N,H,W,3); mask: optional bool (N,H,W), applied to both images first
    (mask-SSIM, Ma et al. protocol: background -> 0). Exactly the reference's skimage 0.13 call
    ``compare_ssim(target, generated, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    multichannel=True, data_range=generated.max() - generated.min())``: 11x11 Gaussian window (truncate 3.5),
    K1 = 0.01, K2 = 0.03, mean over RGB. ``data_range`` is the dynamic range of the (masked) generated
    image, **not 255**, as in the authors' ``test.py``. skimage does all of this exactly; the
    loop over images is cheap next to the generator (about 1 ms per 128x64 pair).
    """
    generated = check_uint8_images("generated", generated)
    target = check_uint8_images("target", target)
    _check_same_shape(generated, target)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != generated.shape[:3]:
            raise InputError(f"mask: expected shape {generated.shape[:3]}, got {mask.shape}")
    scores = np.empty(len(generated), dtype=np.float64)
    for i in range(len(generated)):
        gen, ref = generated[i], target[i]
        if mask is not None:  # masked one pair at a time: no full-size masked copies of large test sets
            keep = mask[i, ..., None].astype(np.uint8)
            gen, ref = gen * keep, ref * keep
        data_range = float(gen.max()) - float(gen.min())
        scores[i] = structural_similarity(
            ref,
            gen,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            K1=0.01,
            K2=0.03,
            channel_axis=-1,
            data_range=data_range,
        )
    return scores


def l1(generated: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-pair mean |target - generated| in [-1, 1] units (the reference's printed "L1 score") -> (N,)."""
    generated = check_uint8_images("generated", generated)
    target = check_uint8_images("target", target)
    _check_same_shape(generated, target)
    diff = np.abs(generated.astype(np.float64) - target.astype(np.float64))
    return diff.reshape(len(diff), -1).mean(axis=1) / 127.5


# ----------------------------------------------------------------------------------------------
# Inception: IS and FID


def _batches(images: np.ndarray, batch_size: int, device: torch.device | str) -> Iterator[torch.Tensor]:
    """uint8 (N,H,W,3) -> uint8 tensors (b,3,H,W) on ``device``."""
    for start in range(0, len(images), batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
        yield chunk.permute(0, 3, 1, 2).contiguous().to(device)


class InceptionV3(nn.Module):
    """The TF ``inception-2015-12-05`` graph (torch-fidelity's port), frozen and in eval mode.

    ``forward(uint8 (B,3,H,W))`` -> ``(pool3 (B,2048), logits_unbiased (B,1008))``. Images of any size are
    resized to 299x299 inside the network by a bilinear resize bit-compatible with TF1's, then mapped to
    [-1, 1] by (x - 128) / 128 - what the OpenAI improved-GAN IS code feeds the graph. The logits are
    pool3 @ W **without the bias**, as in the OpenAI code (``tf.matmul(pool3, w)``).
    """

    num_features = 2048

    def __init__(self, weights: str | os.PathLike | None = None):
        super().__init__()
        path = find_weights(INCEPTION_WEIGHTS, weights, INCEPTION_URL)
        try:
            from torch_fidelity import FeatureExtractorInceptionV3
        except ImportError:
            raise MetricUnavailable("torch-fidelity is not installed (pip install torch-fidelity)") from None
        # torch-fidelity unpickles the file with weights_only=False: check first that it holds tensors only.
        load_state_dict(path)
        self.net = FeatureExtractorInceptionV3(
            "deformgan-inception", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
        )
        self.net.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> InceptionV3:
        return super().train(False)  # frozen: batch norm always uses its running statistics

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pool3, logits = self.net(images)
        return pool3, logits


class _Features(nn.Module):
    """Identity "extractor": lets torchmetrics' FID accumulate pool3 features computed once by us."""

    num_features = InceptionV3.num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def inception_score_from_logits(logits: torch.Tensor, splits: int = IS_SPLITS) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))) per split -> (mean, std over splits); logits (N, classes).

    The OpenAI improved-GAN formula (Salimans et al. 2016, used by the authors' ``test.py``): splits are
    consecutive slices ``[i*N//splits, (i+1)*N//splits)`` in the given order and p(y) is the split's mean
    prediction; std is the population std. torchmetrics' InceptionScore shuffles the images before
    splitting (torch.randperm), which makes the split scores random, hence this small function.
    """
    if logits.ndim != 2 or len(logits) < splits:
        raise InputError(f"inception score: need at least {splits} images (one per split), got {len(logits)}")
    log_p = torch.log_softmax(logits.double(), dim=1)
    n = len(log_p)
    scores = []
    for i in range(splits):
        part = log_p[i * n // splits : (i + 1) * n // splits]
        log_marginal = torch.logsumexp(part, dim=0) - np.log(len(part))
        kl = (part.exp() * (part - log_marginal)).sum(dim=1).mean()
        scores.append(kl.exp().item())
    return float(np.mean(scores)), float(np.std(scores))


@torch.no_grad()
def inception_outputs(
    images: np.ndarray, inception: InceptionV3, batch_size: int = 50, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N,H,W,3) at native resolution -> (pool3 (N,2048), logits_unbiased (N,1008)), on the CPU."""
    images = check_uint8_images("images", images)
    device = next(inception.parameters()).device
    pools, logits = [], []
    for batch in _progress(
        _batches(images, batch_size, device), len(images), batch_size, progress, "inception"
    ):
        pool3, logit = inception(batch)
        pools.append(pool3.cpu())
        logits.append(logit.cpu())
    return torch.cat(pools), torch.cat(logits)


class FID:
    """Fréchet Inception distance on pool3 features of :class:`InceptionV3` (torchmetrics' FID maths).

    Feed the real (training) images with ``update(images, real=True)`` and the generated ones with
    ``real=False``, uint8 (N,H,W,3) at the evaluation resolution; or pool3 features already computed (for IS)
    with ``update_features``. Note: GFLA, PIDM and CFLD compute FID with torchvision's
    ImageNet Inception; this is the TF-FID Inception of pytorch-fid / torch-fidelity, so the two families
    of numbers are not comparable.
    """

    def __init__(self, inception: InceptionV3, batch_size: int = 50):
        from torchmetrics.image.fid import FrechetInceptionDistance

        self.inception = inception
        self.batch_size = batch_size
        self.metric = FrechetInceptionDistance(feature=_Features(), reset_real_features=False)

    def update(self, images: np.ndarray, real: bool) -> None:
        self.update_features(inception_outputs(images, self.inception, self.batch_size)[0], real)

    def update_features(self, pool3: torch.Tensor, real: bool) -> None:
        """Add pool3 features (N, 2048) of real or generated images."""
        if pool3.ndim != 2 or pool3.shape[1] != InceptionV3.num_features:
            raise InputError(f"fid: expected pool3 features (N, 2048), got {tuple(pool3.shape)}")
        self.metric.update(pool3.float().cpu(), real=real)

    def compute(self) -> float:
        """The distance; needs at least 2 real and 2 generated images."""
        return float(self.metric.compute())


# ----------------------------------------------------------------------------------------------
# LPIPS


class LPIPS(nn.Module):
    """LPIPS with AlexNet ("net-lin", v0.1 linear layers): ``forward(a, b)`` (B,3,H,W) in [-1, 1] -> (B,).

    torchmetrics' public ``LearnedPerceptualImagePatchSimilarity`` implements LPIPS exactly (the pip
    ``lpips`` package, v0.1) and ships the linear-layer weights in its wheel; its AlexNet backbone comes
    from torchvision, which reads ``<hub dir>/checkpoints/alexnet-owt-7be5be79.pth`` and downloads it only
    when that file is absent. The backbone file found by :func:`find_weights` (an explicit path,
    ``$DEFORMGAN_WEIGHTS`` or the hub cache) is therefore linked into a private hub folder while the
    metric is built (:func:`deformgan.pretrained.hub_checkpoints_holding`): torchvision loads it from
    there, nothing is downloaded, nothing random is left.
    """

    def __init__(self, weights: str | os.PathLike | None = None):
        super().__init__()
        path = find_weights(ALEXNET_WEIGHTS, weights, ALEXNET_URL)
        load_state_dict(path)  # refuse a file that is not a plain state dict before torchvision reads it
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        with hub_checkpoints_holding({ALEXNET_WEIGHTS: path}):
            self.metric = LearnedPerceptualImagePatchSimilarity(net_type="alex", reduction="none")
        self.metric.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> LPIPS:
        return super().train(False)

    @torch.no_grad()
    def forward(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if generated.shape != target.shape or generated.ndim != 4 or generated.shape[1] != 3:
            shapes = f"{tuple(generated.shape)} and {tuple(target.shape)}"
            raise InputError(f"lpips: expected two (B,3,H,W) tensors of the same shape, got {shapes}")
        self.metric.reset()
        self.metric.update(generated, target)
        return self.metric.compute().reshape(len(generated))


# ----------------------------------------------------------------------------------------------
# Detection score: SSD300 (COCO) and the offline HOG people detector


class PersonDetector(nn.Module):
    """torchvision SSD300-VGG16 (COCO): the closest available network to the paper's Caffe SSD300-VGG16.

    Same architecture family and input size as the reference's DS model (VOC07+12 SSD300,
    ``ssd_score/compute_ssd_score.py``),
    and torchvision's post-processing has the reference's ``deploy.prototxt`` settings: score threshold 0.01,
    NMS 0.45, top-k 400, keep 200; its transform warps every image to 300x300 and subtracts the same mean
    (RGB 123, 117, 104 on 0-255 values). Differences: COCO rather than VOC training data (the person class
    is COCO 1 instead of VOC 15). ``forward(uint8 (B,3,H,W))`` -> best person confidence per image (B,),
    0 when no person is detected.
    """

    def __init__(self, weights: str | os.PathLike | None = None):
        super().__init__()
        path = find_weights(SSD_WEIGHTS, weights, SSD_URL)
        from torchvision.models.detection import ssd300_vgg16

        self.net = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=91)
        self.net.load_state_dict(load_state_dict(path))
        self.net.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> PersonDetector:
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        detections = self.net(list(images.float() / 255.0))
        scores = []
        for det in detections:  # variable-length outputs per image: torchvision returns a list
            person = det["scores"][det["labels"] == COCO_PERSON]
            scores.append(person.max() if len(person) else person.new_zeros(()))
        return torch.stack(scores)


def detection_scores(images: np.ndarray, detector: PersonDetector, batch_size: int = 16) -> np.ndarray:
    """uint8 (N,H,W,3) -> best "person" confidence per image (N,) (DS = its mean)."""
    images = check_uint8_images("images", images)
    device = next(detector.parameters()).device
    return (
        torch.cat([detector(b).cpu() for b in _batches(images, batch_size, device)])
        .numpy()
        .astype(np.float64)
    )


@dataclass(frozen=True)
class HogDetections:
    """Per-image results of the HOG people detector: ``detected`` bool (N,), ``max_margin`` float (N,).

    ``max_margin`` is the largest SVM margin among the grouped detections (0 when there is none).
    """

    detected: np.ndarray
    max_margin: np.ndarray


def _hog_detector():
    import cv2

    if not hasattr(cv2, "HOGDescriptor"):
        raise MetricUnavailable(
            f"OpenCV {cv2.__version__} has no HOGDescriptor (removed in OpenCV 5): "
            "install opencv-python-headless<5 for ds_hog"
        )
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    return hog


def hog_detections(images: np.ndarray) -> HogDetections:
    """OpenCV's HOG + linear-SVM people detector (Dalal-Triggs, shipped inside OpenCV, no download).

    uint8 (N,H,W,3) RGB. Each image is resized (bilinear) to a height of ``HOG_HEIGHT`` = 256 px keeping its
    aspect ratio, padded by ``HOG_BORDER`` = 32 px of replicated border, and scanned by
    ``detectMultiScale(hitThreshold=0, winStride=(8, 8), scale=1.05)`` (OpenCV defaults otherwise).
    """
    import cv2

    images = check_uint8_images("images", images)
    hog = _hog_detector()
    detected = np.zeros(len(images), dtype=bool)
    max_margin = np.zeros(len(images), dtype=np.float64)
    for i, image in enumerate(images):
        height, width = image.shape[:2]
        scale = HOG_HEIGHT / height
        resized = cv2.resize(
            image[..., ::-1], (round(width * scale), HOG_HEIGHT), interpolation=cv2.INTER_LINEAR
        )
        padded = cv2.copyMakeBorder(resized, *(HOG_BORDER,) * 4, cv2.BORDER_REPLICATE)
        _, weights = hog.detectMultiScale(padded, hitThreshold=0, winStride=(8, 8), scale=1.05)
        weights = np.asarray(weights, dtype=np.float64).ravel()
        if len(weights):
            detected[i] = True
            max_margin[i] = weights.max()
    return HogDetections(detected, max_margin)


# ----------------------------------------------------------------------------------------------


def _progress(iterable, total: int, batch_size: int, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=(total + batch_size - 1) // batch_size, desc=desc, unit="batch", leave=False)
