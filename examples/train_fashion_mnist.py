"""Train the default recipe for two epochs and compare two models, using only the public API.

    python examples/train_fashion_mnist.py
"""

import archlab

for name in ("cnn_small", "resnet20"):
    cfg = archlab.load_config("configs/fashion_mnist/default.yaml",
                              [f"model.name={name}", "train.epochs=2", "experiment=example"])
    result = archlab.run_experiment(cfg)
    info = archlab.model_info(name, num_classes=10, in_chans=1)
    print(f"{name}: test accuracy {result.metrics['test.acc']:.4f}, "
          f"{info.params:,} params, {result.metrics['train_time_s']:.0f} s")

for run in archlab.RunStore("runs").list("example", sort="test.acc"):
    print(run.run_id, run.model, run.metrics["test.acc"])
