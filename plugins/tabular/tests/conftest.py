import pytest


@pytest.fixture
def keep_torch_threads():
    # train.cpu_threads sets torch's thread count for the process; give it back afterwards
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


MIXED_CSV = """\
id,height,when,member,colour,day,note
1,1.5,2020-01-02T03:04:05,true,red,2020-01-02,a
2,,2021-06-30T12:00:00,false,blue,2020-02-03,
3,2.25,2019-12-31T23:59:59,TRUE,red,2020-03-04,b
4,3.125,,false,,2020-04-05,c
5,-0.5,2022-02-02T02:02:02,true,green,2020-05-06,?
6,10.0,2023-03-03T03:03:03,false,blue,2020-06-07,a
"""


@pytest.fixture
def mixed_csv(tmp_path):
    """A small CSV with every kind of column and missing cells in several of them."""
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED_CSV)
    return path


@pytest.fixture
def mixed_table_csv(tmp_path):
    return write_mixed_table(tmp_path / "mixed_table.csv")


def write_mixed_table(path):
    """150 rows of every kind, with missing cells and a dependency (colour follows height)."""
    import datetime as dt

    import numpy as np

    rng = np.random.default_rng(0)
    lines = ["id,height,when,member,colour,day"]
    for i in range(150):
        height = round(float(rng.normal(1.7, 0.2)), 2)
        when = dt.datetime(2020, 1, 1) + dt.timedelta(seconds=int(rng.integers(0, 10**7)))
        colour = "red" if height > 1.7 else "blue"
        day = dt.date(2021, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365)))
        lines.append(",".join([str(i), "" if i % 10 == 3 else str(height), when.isoformat(),
                               "true" if rng.random() < 0.3 else "false", "" if i % 17 == 5 else colour,
                               day.isoformat()]))
    path.write_text("\n".join(lines) + "\n")
    return path
