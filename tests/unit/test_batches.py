"""Length-bucketed training batches cover every row once per epoch and trim only padding."""

from pathlib import Path

import numpy as np
import pytest

from training.batches import LengthBucketedBatches


def _padded(lengths: list[int], width: int, padding: str) -> np.ndarray:
    x = np.zeros((len(lengths), width), np.int32)
    for row, n in enumerate(lengths):
        ids = np.arange(2, n + 2)
        if padding == "post":
            x[row, :n] = ids
        elif n:
            x[row, -n:] = ids
    return x


@pytest.mark.parametrize("padding", ["post", "pre"])
def test_every_row_once_per_epoch_and_no_token_is_cut(padding: str) -> None:
    rng = np.random.default_rng(0)
    lengths = [int(n) for n in rng.integers(0, 200, 1000)]
    x = _padded(lengths, 200, padding)
    y = np.arange(1000, dtype=np.int64)  # the label identifies the row
    batches = LengthBucketedBatches(x, y, 32, padding, seed=1, pool_batches=4)  # type: ignore[arg-type]
    epochs = []
    for _ in range(2):
        seen = []
        widths = []
        for i in range(len(batches)):
            xb, yb = batches[i]
            widths.append(xb.shape[1])
            assert xb.shape[1] % 16 == 0 or xb.shape[1] == 200
            for row, label in zip(xb, yb, strict=True):
                kept = row[row != 0]
                np.testing.assert_array_equal(kept, x[label][x[label] != 0])  # nothing cut
            seen.extend(yb.tolist())
        assert sorted(seen) == list(range(1000))
        assert len(batches) == 32
        assert np.mean(widths) < 0.75 * 200  # padding was trimmed
        epochs.append(seen)
        batches.on_epoch_end()
    assert epochs[0] != epochs[1]  # reshuffled every epoch
    again = LengthBucketedBatches(x, y, 32, padding, seed=1, pool_batches=4)  # type: ignore[arg-type]
    assert [int(v) for i in range(len(again)) for v in again[i][1]] == epochs[0]  # seeded


def test_rejects_mismatched_rows() -> None:
    with pytest.raises(ValueError, match="x has 3 rows but y has 2"):
        LengthBucketedBatches(np.ones((3, 4), np.int32), np.zeros(2, np.int64), 2, "post", 0)


def test_an_unmasked_network_cannot_be_bucketed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.fit import main

    args = ["--dataset", "bbc", "--data-dir", str(tmp_path), "--output", str(tmp_path / "out")]
    assert main([*args, "--bucket-by-length", "--no-mask"]) == 2
    assert "--bucket-by-length trims padding" in capsys.readouterr().err
