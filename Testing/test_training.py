"""Training: datasets, prompt sampling, loss, the simulated-interaction trainer, checkpoints, resume and DDP.

Everything runs the real code on real data (../shared/data) or small files written here; the models
are the embedded LiteMedSAM and a tiny random SAM-Med2D, so the whole file takes a few CPU minutes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from scipy import ndimage

from conftest import DATA, DEMO, demo_masks, require
from sammed2d.checkpoints import save_checkpoint
from sammed2d.models import ViTConfig, get_spec, load_model
from sammed2d.paper_data import DatasetError, read_json_index
from sammed2d.training.datasets import JsonDataset, VolumeFiles, VolumeSliceDataset, split_by_group
from sammed2d.training.inputs import image_to_input, masks_to_input
from sammed2d.decoding import DecoderPrompts
from sammed2d.training.interaction import PromptedSam
from sammed2d.training.losses import sam_med2d_loss
from sammed2d.paper_prompts import box_from_mask, error_region_points, init_point_sampling
from sammed2d.training.trainer import TrainingConfig, train

TINY = ViTConfig(96, 4, 4, (1, 3))
TINY_JSON = json.dumps({"embed_dim": 96, "depth": 4, "num_heads": 4, "global_attn_indexes": [1, 3]})
PYRADIOMICS = DATA / "pyradiomics"


def model_state(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in network.state_dict().items()}


def digest(state: dict[str, torch.Tensor]) -> str:
    return hashlib.sha256(b"".join(state[key].numpy().tobytes() for key in sorted(state))).hexdigest()


# --- datasets ------------------------------------------------------------------------------------------------------


def test_demo_json_sets_read_as_released():
    train_entries = read_json_index(require(DEMO / "image2label_train.json"))
    test_entries = read_json_index(DEMO / "label2image_test.json")
    # the JSON says data_demo/…; the folder here is sammed2d-demo, and both index kinds give image → masks
    listed = {mask.name for entry in train_entries + test_entries for mask in entry.masks}
    assert listed == set(demo_masks()) and len(listed) == 30
    assert all(demo_masks()[mask.name] == entry.image.name for entry in test_entries for mask in entry.masks)
    dataset = JsonDataset(train_entries)
    assert len(dataset) == 2
    for item, entry in zip(dataset, train_entries):
        assert item.image.dtype == np.uint8 and item.image.ndim == 2  # grey PNGs stored as RGB come back 2D
        assert len(item.masks) == len(entry.masks)
        assert all(mask.dtype == bool and mask.shape == item.image.shape and mask.any() for mask in item.masks)


def test_volume_pair_is_sliced_with_the_papers_rules():
    case = VolumeFiles(require(PYRADIOMICS / "brain1_image.nrrd"), PYRADIOMICS / "brain1_label.nrrd")
    dataset = VolumeSliceDataset([case], axes=("K",), preset="minmax", min_mask_pixels=100)
    volume = sitk.GetArrayFromImage(sitk.ReadImage(str(case.image))).astype(np.float64)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(case.labels)))
    expected_masks = 0
    for k in range(labels.shape[0]):
        components, count = ndimage.label(labels[k] > 0, structure=np.ones((3, 3)))
        expected_masks += sum(int((components == c).sum() >= 100) for c in range(1, count + 1))
    items = [dataset[index] for index in range(len(dataset))]
    assert sum(len(item.masks) for item in items) == expected_masks > 0
    low, high = volume.min(), volume.max()
    for item, entry in zip(items, dataset.entries):
        np.testing.assert_allclose(item.image, (volume[entry.index] - low) / (high - low) * 255, atol=1e-3)
        assert item.image.dtype == np.float32  # not rounded to 8 bits: inference does not round either
        for mask in item.masks:  # each mask is one connected lesion part of at least 100 pixels (slices are 256²)
            assert mask.sum() >= 100 and ndimage.label(mask, structure=np.ones((3, 3)))[1] == 1
            assert not (mask & (labels[entry.index] == 0)).any()


def write_case(folder: Path, name: str, value: float, *, labelled: bool = True, spacing: float = 1.0) -> VolumeFiles:
    """An 8-slice 40×40 volume with a labelled 12×12 square on slices 2..5 (label 2 there, label 5 elsewhere)."""
    image = np.full((8, 40, 40), value, dtype=np.float32)
    image[:, 10:30, 10:30] += 100
    labels = np.zeros(image.shape, dtype=np.uint8)
    if labelled:
        labels[2:6, 12:24, 12:24] = 2
        labels[6, 30:38, 2:10] = 5
    paths = []
    for suffix, array, step in (("image", image, 1.0), ("label", labels, spacing)):
        written = sitk.GetImageFromArray(array)
        written.SetSpacing((step, step, 2.0))
        path = folder / f"{name}_{suffix}.nrrd"
        sitk.WriteImage(written, str(path))
        paths.append(path)
    return VolumeFiles(*paths)


def test_split_is_by_volume(tmp_path):
    cases = [write_case(tmp_path, f"case{i}", float(i)) for i in range(5)]
    train_cases, val_cases = split_by_group(cases, 0.4, seed=3)
    assert (len(val_cases) == 2 and set(train_cases).isdisjoint(val_cases)
            and set(train_cases) | set(val_cases) == set(cases))
    assert split_by_group(cases, 0.4, seed=3) == (train_cases, val_cases)  # the same split on every process
    for chosen, dataset in ((train_cases, VolumeSliceDataset(train_cases)), (val_cases, VolumeSliceDataset(val_cases))):
        sources = {dataset[i].source.split(" ")[0] for i in range(len(dataset))}
        assert sources == {str(case.image) for case in chosen}
        assert len(dataset) == 5 * len(chosen)  # slices 2..6 of every volume, never a part of one
    assert split_by_group(cases[:1], 0.4, seed=3) == (cases[:1], [])  # never the only volume


def test_slice_range_keeps_only_those_slices_for_training(tmp_path):
    case = write_case(tmp_path, "case", 0.0)  # masks on slices 2..6
    kept = VolumeSliceDataset([case], slices=(3, 4))
    assert [entry.index for entry in kept.entries] == [3, 4]
    assert [entry.index for entry in VolumeSliceDataset([case], slices=(5, 20)).entries] == [5, 6]
    with pytest.raises(ValueError, match="FIRST <= LAST"):
        VolumeSliceDataset([case], slices=(4, 3))


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array.astype(np.uint8)), str(path))
    return path


def write_json_set(root: Path, mask: np.ndarray, *, list_missing: bool = False) -> Path:
    folder = root / "data_demo"
    write_png(folder / "images" / "a.png", np.arange(48 * 64).reshape(48, 64) % 256)
    write_png(folder / "masks" / "a_organ_000.png", mask)
    masks = ["data_demo/masks/a_organ_000.png"] + (["data_demo/masks/a_gone_000.png"] if list_missing else [])
    index = folder / "image2label_train.json"
    index.write_text(json.dumps({"data_demo/images/a.png": masks}), encoding="utf-8")
    return index


def square(shape: tuple[int, int] = (48, 64), value: int = 255) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[10:20, 10:30] = value
    return mask


def test_json_set_with_good_masks_reads(tmp_path):
    for value in (1, 255):
        item = JsonDataset(read_json_index(write_json_set(tmp_path / str(value), square(value=value))))[0]
        assert item.masks[0].sum() == 200 and item.image.shape == (48, 64)


def volume_problem(folder: Path, problem: str) -> tuple[Path, object]:
    case = write_case(folder, "c", 0.0, spacing=0.5 if problem == "geometry" else 1.0,
                      labelled=problem != "empty labels")
    if problem == "missing image":
        case.image.unlink()
    culprit = case.image if problem == "missing image" else case.labels
    return culprit, lambda: VolumeSliceDataset([case])


def json_problem(folder: Path, problem: str) -> tuple[Path, object]:
    mask = {"mask size": square((40, 64)), "empty mask": square(value=0)}.get(problem, square())
    if problem == "non-binary":
        mask = square(value=2)
        mask[0, 0] = 1
    index = write_json_set(folder, mask, list_missing=problem == "listed mask missing")
    if problem == "listed mask missing":
        return Path("data_demo/masks/a_gone_000.png"), lambda: read_json_index(index)
    return index.parent / "masks" / "a_organ_000.png", lambda: JsonDataset(read_json_index(index))[0]


@pytest.mark.parametrize("problem", ["missing image", "geometry", "empty labels", "non-binary", "mask size",
                                     "listed mask missing", "empty mask"])
def test_bad_data_errors_name_the_file(tmp_path, problem):
    volume_problems = ("missing image", "geometry", "empty labels")
    culprit, build = (volume_problem if problem in volume_problems else json_problem)(tmp_path, problem)
    with pytest.raises(DatasetError) as error:
        build()
    assert str(culprit) in str(error.value), str(error.value)


# --- prompts and loss ----------------------------------------------------------------------------------------------


def test_box_is_the_largest_component_with_the_reference_jitter():
    mask = np.zeros((64, 64), bool)
    mask[10:20, 5:25] = True  # 20 wide, 10 high: jitter limit min(5, int(0.1·10·5)) = 5 → offsets in [-5, 4]
    mask[40:42, 40:42] = True  # a smaller second part is ignored
    np.testing.assert_array_equal(box_from_mask(mask), [5, 10, 25, 20])
    rng = np.random.default_rng(0)
    offsets = np.array([box_from_mask(mask, rng) - [5, 10, 25, 20] for _ in range(400)])
    np.testing.assert_array_equal(offsets[:, :2], offsets[:, 2:])  # translated, never scaled
    assert set(offsets[:, 0].astype(int)) == set(range(-5, 5)) == set(offsets[:, 1].astype(int))
    small = np.zeros((64, 64), bool)
    small[3:7, 3:9] = True  # 6×4: limit int(0.1·4·5) = 2 → offsets in [-2, 1]
    assert {int(box_from_mask(small, rng)[0]) - 3 for _ in range(200)} == {-2, -1, 0, 1}
    np.testing.assert_array_equal(box_from_mask(np.zeros((8, 16), bool)), [0, 0, 16, 8])


def test_click_sampling_labels_and_seeding():
    truth = np.zeros((32, 32), bool)
    truth[8:24, 8:24] = True
    prediction = np.zeros_like(truth)
    prediction[8:24, 16:30] = True  # misses the left half, leaks to the right
    coords, labels = error_region_points(prediction, truth, 9, np.random.default_rng(1))
    assert coords.shape == (9, 2) and set(labels) <= {0, 1}
    for (x, y), label in zip(coords.astype(int), labels):
        assert prediction[y, x] != truth[y, x] and label == int(truth[y, x])  # 1 = missed (FN), 0 = leak (FP)
    again = error_region_points(prediction, truth, 9, np.random.default_rng(1))
    np.testing.assert_array_equal(coords, again[0])
    _, no_error_labels = error_region_points(truth, truth, 3, np.random.default_rng(1))
    np.testing.assert_array_equal(no_error_labels, [-1, -1, -1])
    (x, y), = init_point_sampling(truth, 1, np.random.default_rng(2))[0].astype(int)
    assert truth[y, x]
    _, labels = init_point_sampling(np.zeros_like(truth), 1, np.random.default_rng(2))
    np.testing.assert_array_equal(labels, [0])
    coords, labels = init_point_sampling(truth, 5, np.random.default_rng(3))
    assert sorted(labels) == [0, 0, 0, 1, 1] and all(truth[y, x] == label
                                                     for (x, y), label in zip(coords.astype(int), labels))


def test_loss_matches_hand_computed_values():
    # two 1×2 "masks"; logits 0 (p = 1/2) and ln 3 (p = 3/4); targets [1, 0] and [0, 1]
    logits = torch.tensor([[[[0.0, math.log(3)]]], [[[0.0, math.log(3)]]]])
    target = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]])
    predicted_iou = torch.tensor([[0.5], [0.25]])
    terms = sam_med2d_loss(logits, target, predicted_iou)
    # focal per pixel: p=1/2,t=1: .25·.25·ln2 = .0433217; p=3/4,t=0: .75·.5625·ln4 = .5848431;
    # p=1/2,t=0: .75·.25·ln2 = .1299651; p=3/4,t=1: .25·.0625·ln(4/3) = .0044950 → mean over 4 pixels
    assert terms.focal.item() == pytest.approx((0.0433217 + 0.5848431 + 0.1299651 + 0.0044950) / 4, abs=1e-6)
    # dice: Σp = 2.5, Σt = 2, Σpt = .5 + .75 = 1.25 → 1 - (2.5 + 1) / (4.5 + 1)
    assert terms.dice.item() == pytest.approx(1 - 3.5 / 5.5, abs=1e-6)
    # batch IoU: 1.25 / (4.5 - 1.25) = .3846154; MSE against .5 and .25
    iou = 1.25 / 3.25
    assert terms.iou.item() == pytest.approx(((iou - 0.5) ** 2 + (iou - 0.25) ** 2) / 2, abs=1e-6)
    assert terms.total.item() == pytest.approx(20 * terms.focal.item() + terms.dice.item() + terms.iou.item(), abs=1e-5)


# --- training --------------------------------------------------------------------------------------------------------


def demo_subset(index_name: str, image_name: str) -> JsonDataset:
    entries = read_json_index(require(DEMO / index_name))
    return JsonDataset([entry for entry in entries if entry.image.name == image_name])


def fixed_prompt_losses(network: torch.nn.Module, item, model: str) -> tuple[float, float]:
    """The training loss of every mask of ``item`` with a tight box, and with one seeded click."""
    spec = get_spec(model)
    image, resized = image_to_input(item.image, spec, torch.device("cpu"))
    targets = masks_to_input(item.masks, resized, spec.image_size)[:, None].float()
    masks = targets[:, 0].numpy() > 0.5
    rng = np.random.default_rng(5)
    coords, labels = zip(*(init_point_sampling(mask, 1, rng) for mask in masks))
    prompted = PromptedSam(network, spec.multimask_default)
    losses = []
    with torch.no_grad():
        embedding = network.image_encoder(image)
        boxes = torch.tensor(np.stack([box_from_mask(mask) for mask in masks]), dtype=torch.float32)
        clicks = (torch.tensor(np.stack(coords), dtype=torch.float32), torch.tensor(np.stack(labels)))
        for prompts in (DecoderPrompts(boxes=boxes), DecoderPrompts(points=clicks)):
            low_res, iou, _ = prompted(embedding, prompts, False)
            logits = F.interpolate(low_res, size=targets.shape[-2:], mode="bilinear", align_corners=False)
            losses.append(sam_med2d_loss(logits, targets, iou).total.item())
    return losses[0], losses[1]


def test_litemedsam_decoder_fine_tune_lowers_the_loss(tmp_path):
    dataset = demo_subset("label2image_test.json", "amos_0004_75.png")  # liver, aorta, vena cava
    item = dataset[0]
    initial = load_model("litemedsam", device="cpu", precision="exact").network
    before = fixed_prompt_losses(initial, item, "litemedsam")
    started = time.perf_counter()
    config = TrainingConfig(out=tmp_path, model="litemedsam", trainable="decoder", epochs=2, batch_size=1,
                            masks_per_image=3, interaction_steps=1, device="cpu", progress=False)
    result = train(config, dataset)
    seconds = time.perf_counter() - started
    after = fixed_prompt_losses(result.network, item, "litemedsam")
    print(f"LiteMedSAM decoder, 2 epochs × 1 image × 2 steps in {seconds:.0f} s: box loss {before[0]:.4f} → "
          f"{after[0]:.4f}, click loss {before[1]:.4f} → {after[1]:.4f}; epochs {result.epochs}")
    assert after[0] < before[0] and after[1] < before[1]
    assert result.epochs[1]["train_loss"] < result.epochs[0]["train_loss"]
    initial_state, trained = model_state(initial), model_state(result.network)
    changed = {key for key in trained if not torch.equal(trained[key], initial_state[key])}
    assert changed and all(key.startswith("mask_decoder.") for key in changed)  # BN statistics included


def test_tiny_sammed2d_trains_adapters_and_round_trips(tmp_path):
    torch.manual_seed(1)
    start = save_checkpoint(load_model("sam-med2d", vit=TINY, random_weights=True, precision="exact").network,
                            tmp_path / "start.pth")
    initial = model_state(load_model("sam-med2d", start, vit=TINY, precision="exact").network)
    dataset = demo_subset("image2label_train.json", "amos_0006_90.png")
    config = TrainingConfig(out=tmp_path / "run", model="sam-med2d", checkpoint=start, vit=TINY, epochs=1,
                            batch_size=1, interaction_steps=2, device="cpu", progress=False)
    result = train(config, dataset, dataset)
    trained = model_state(result.network)
    adapters = [key for key in trained if ".Adapter." in key]
    frozen = [key for key in trained if key.startswith("image_encoder.") and ".Adapter." not in key]
    assert len(adapters) == 6 * TINY.depth and frozen
    assert all(not torch.equal(trained[key], initial[key]) for key in adapters)
    assert all(torch.equal(trained[key], initial[key]) for key in frozen)
    assert any(not torch.equal(trained[key], initial[key]) for key in trained if key.startswith("prompt_encoder."))
    assert any(not torch.equal(trained[key], initial[key]) for key in trained if key.startswith("mask_decoder."))
    # the best checkpoint has the reference's key layout and loads in the registry; the run state needs no pickle
    assert result.best is not None and result.last is not None
    reloaded = model_state(load_model("sam-med2d", result.best, vit=TINY, precision="exact").network)
    assert reloaded.keys() == trained.keys() and all(torch.equal(reloaded[k], trained[k]) for k in trained)
    last = torch.load(result.last, weights_only=True)
    assert last["epoch"] == 1 and last["trainable"] == "adapters+decoder" and last["best"]["metric"] == "val_dice"
    assert {"optimizer", "scheduler", "scaler", "config", "rng"} <= last.keys()
    assert 0 <= last["best"]["value"] <= 1 and result.epochs[0]["val_dice"] == last["best"]["value"]


@pytest.mark.parametrize("trainable", ["adapters", "all"])
def test_tiny_sammed2d_trains_only_the_chosen_parts(tmp_path, trainable):
    """``adapters`` moves the adapters and nothing else; ``all`` moves the encoder's own weights too."""
    torch.manual_seed(1)
    start = save_checkpoint(load_model("sam-med2d", vit=TINY, random_weights=True, precision="exact").network,
                            tmp_path / "start.pth")
    initial = model_state(load_model("sam-med2d", start, vit=TINY, precision="exact").network)
    dataset = demo_subset("image2label_train.json", "amos_0006_90.png")
    config = TrainingConfig(out=tmp_path / "run", model="sam-med2d", checkpoint=start, vit=TINY, trainable=trainable,
                            epochs=1, batch_size=1, masks_per_image=2, interaction_steps=0, lr=1e-3, device="cpu",
                            progress=False)
    trained = model_state(train(config, dataset).network)
    changed = {key for key in trained if not torch.equal(trained[key], initial[key])}
    adapters = {key for key in trained if ".Adapter." in key}
    if trainable == "adapters":
        assert changed == adapters
    else:
        encoder_own = {key for key in trained if key.startswith("image_encoder.") and key not in adapters}
        assert adapters <= changed and changed & encoder_own
        assert any(key.startswith("mask_decoder.") for key in changed)


def test_adapters_alone_need_no_corrective_steps(tmp_path):
    with pytest.raises(ValueError, match="interaction_steps to 0"):
        TrainingConfig(out=tmp_path, trainable="adapters", interaction_steps=2).check()
    litemedsam_adapters = TrainingConfig(out=tmp_path, model="litemedsam", trainable="adapters", interaction_steps=0,
                                         device="cpu", progress=False)
    with pytest.raises(ValueError, match="no adapters"):
        train(litemedsam_adapters, demo_subset("label2image_test.json", "amos_0004_75.png"))


def cli_train(out: Path, *extra: str) -> list[str]:
    case = require(PYRADIOMICS / "brain1_image.nrrd")
    return [sys.executable, "-m", "sammed2d", "train", "--model", "sam-med2d", "--random-weights", "--vit", TINY_JSON,
            "--case", str(case), str(PYRADIOMICS / "brain1_label.nrrd"), "--val-fraction", "0", "--epochs", "3",
            "--batch-size", "1", "--masks-per-image", "3", "--interaction-steps", "2", "--lr-milestones", "2",
            "--device", "cpu", "--no-progress", "--out", str(out), *extra]


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train.jsonl").read_text(encoding="utf-8").splitlines()]


def test_run_killed_mid_epoch_resumes_exactly(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    process = subprocess.Popen(cli_train(killed), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        log = read_log(killed) if (killed / "train.jsonl").exists() else []
        if any(record["event"] == "step" and record["epoch"] == 2 for record in log):
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate()
    assert process.returncode == -signal.SIGKILL, stderr.decode()
    epochs_done = [record["epoch"] for record in read_log(killed) if record["event"] == "epoch"]
    assert epochs_done == [1], "the kill must land inside epoch 2"
    assert torch.load(killed / "last.pth", weights_only=True)["epoch"] == 1

    resumed = subprocess.run(cli_train(killed, "--resume"), env=env, capture_output=True, encoding="utf-8", timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    log = read_log(killed)
    assert [record["epoch"] for record in log if record["event"] == "resume"] == [1]
    assert [record["epoch"] for record in log if record["event"] == "epoch"] == [1, 2, 3]
    assert [record["lr"] for record in log if record["event"] == "epoch"] == [1e-4, 1e-4, 5e-5]

    uninterrupted = subprocess.run(cli_train(reference), env=env, capture_output=True, encoding="utf-8", timeout=600)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    final, expected = (torch.load(out / "last.pth", weights_only=True) for out in (killed, reference))
    assert final["epoch"] == expected["epoch"] == 3
    assert all(torch.equal(final["model"][key], expected["model"][key]) for key in expected["model"])
    losses = {out: [r["train_loss"] for r in read_log(out) if r["event"] == "epoch"] for out in (killed, reference)}
    assert losses[killed] == losses[reference]


DDP_SCRIPT = """
import hashlib, os, sys
from pathlib import Path
from sammed2d.models import ViTConfig
from sammed2d.paper_data import read_json_index
from sammed2d.training.datasets import JsonDataset
from sammed2d.training.trainer import TrainingConfig, train

out, demo = Path(sys.argv[1]), Path(sys.argv[2])
config = TrainingConfig(out=out, model="sam-med2d", vit=ViTConfig(96, 4, 4, (1, 3)), random_weights=True, epochs=1,
                        batch_size=1, accumulate=2, masks_per_image=2, interaction_steps=1, device="cpu",
                        progress=False)
images = read_json_index(demo / "image2label_train.json") + read_json_index(demo / "label2image_test.json")
result = train(config, JsonDataset(images))
state = result.network.state_dict()
digest = hashlib.sha256(b"".join(state[key].numpy().tobytes() for key in sorted(state))).hexdigest()
(out / f"weights-rank{os.environ['RANK']}.sha256").write_text(digest)
"""


def test_two_process_cpu_ddp_run_writes_one_checkpoint(tmp_path):
    require(DEMO)
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT, encoding="utf-8")
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(script), str(out), str(DEMO)]
    finished = subprocess.run(command, capture_output=True, encoding="utf-8", timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    # each process trained on its own images; identical weights show the gradients were averaged
    digests = {path.read_text(encoding="utf-8") for path in out.glob("weights-rank*.sha256")}
    assert len(list(out.glob("weights-rank*.sha256"))) == 2 and len(digests) == 1
    assert sorted(path.name for path in out.glob("*.pth")) == ["best.pth", "last.pth"]
    log = read_log(out)
    assert [record["processes"] for record in log if record["event"] == "start"] == [2]
    # 4 images, 2 per process, both batches accumulated into one optimizer step; only rank 0 logs
    assert [record["images"] for record in log if record["event"] == "step"] == [2]
    network = load_model("sam-med2d", out / "last.pth", vit=TINY, precision="exact").network
    assert digest(model_state(network)) == digests.pop()
