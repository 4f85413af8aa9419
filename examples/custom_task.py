"""Write a task: reconstruct images with an autoencoder, trained by archlab's own Trainer.

    python examples/custom_task.py

The Task says what a step computes and how a model is scored; the Trainer brings AMP,
accumulation, clipping, schedules, callbacks and checkpoints unchanged. To make a task available
from YAML (``task: {name: reconstruction}``), put it in a file under ``archlab/tasks/`` with a
config dataclass whose ``name`` is a Literal of the registered name (see the README's "Writing a
task").
"""

import torch
import torch.nn.functional as F

import archlab
from archlab.data import DataConfig, build_loaders
from archlab.metrics.mean import MeanMetric
from archlab.train.precision import resolve_precision
from archlab.train.schedules import ScheduleConfig, build_schedule
from archlab.train.trainer import TrainConfig


class Reconstruction(archlab.Task):
    """Mean squared error between the decoder's output and the (normalized) input image."""

    monitor = ("val.mse", "min")  # what best checkpoints and early stopping watch

    def training_step(self, batch, phase):
        out = self.model(batch["x"])
        return {"loss": F.mse_loss(out["logits"], batch["x"])}

    def evaluation_metrics(self):
        return {"mse": MeanMetric("mse")}

    def validation_step(self, batch, metrics):
        error = self.model(batch["x"])["logits"] - batch["x"]
        metrics["mse"].update(error.pow(2).flatten(1).mean(1))  # one value per image


torch.manual_seed(0)
cpu = torch.device("cpu")
data = build_loaders(DataConfig(name="digits", val_fraction=0.2, batch_size=64), device=cpu,
                     seed=0)
model = archlab.create_model("autoencoder", in_chans=1, img_size=8, latent_dim=16)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
epochs = 8
schedule = build_schedule(optimizer, ScheduleConfig(name="cosine"), epochs=epochs,
                          steps_per_epoch=len(data.train))
trainer = archlab.Trainer(Reconstruction(model, cfg=None), optimizer, schedule,
                          train_loader=data.train, val_loader=data.val,
                          cfg=TrainConfig(epochs=epochs), precision=resolve_precision("fp32", cpu))
before = trainer.validate()["val.mse"]
metrics = trainer.fit()
print(f"validation MSE {before:.3f} before training, {metrics['val.mse']:.3f} after "
      f"{epochs} epochs (train loss {metrics['train.loss']:.3f})")
