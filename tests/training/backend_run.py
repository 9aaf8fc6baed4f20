"""One tiny xbn-train run on the keras backend of ``KERAS_BACKEND``, stopped
dead in epoch 2 and resumed, then scored with xbn-evaluate, all in this
process (one start-up per backend: the suite's time); the export is made by
TensorFlow in its own process, as xbn-train makes it there.

Usage: KERAS_BACKEND=jax python tests/training/backend_run.py OUT [xbn-train settings as JSON]
Prints one JSON line: what the run, its resumption and the evaluation said.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tiny  # noqa: E402

tiny.register()

from xbn.cli import evaluate  # noqa: E402
from xbn.training import TrainConfig, train, trainer  # noqa: E402


def main(out, extra):
    out = Path(out)
    settings = dict(model="tiny_xbn", model_args={}, epochs=2, image_size=32, batch_size=8, steps_per_epoch=40,
                    recalibrate_bn=2, verbose=False, out=str(out), **extra)
    original = trainer._Run._train_epoch

    def crash_in_epoch_2(self, index):
        if index == 1:
            raise KeyboardInterrupt
        return original(self, index)

    trainer._Run._train_epoch = crash_in_epoch_2
    try:
        train(TrainConfig(**settings), log=lambda line: None)
    except KeyboardInterrupt:
        pass
    trainer._Run._train_epoch = original
    checkpointed = json.loads((out / "checkpoints" / "latest.json").read_text())["epoch"]
    lines = []
    metrics = train(TrainConfig(**settings), log=lines.append)
    code = evaluate.main([str(out), "--json", str(out.parent / "scores.json")])
    print(json.dumps({"checkpointed": checkpointed, "lines": lines, "metrics": metrics, "evaluate": code,
                      "scores": json.loads((out.parent / "scores.json").read_text())}))


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
