"""DSSTNE's files: NetCDF data sets, text data and index files, and model files.

- :mod:`~sparse_deep.io.netcdf_data`: data sets in DSSTNE's NetCDF layout, read
  into and written from scipy.sparse matrices.
- :mod:`~sparse_deep.io.text_format`: ``sample<TAB>feature[,value]:...`` data
  lines, ``label<TAB>index`` index files and recommendation lists.
- :mod:`~sparse_deep.io.model_file`: a fitted estimator as one NetCDF file.

docs/io.md describes every layout.
"""

from .model_file import load_model, register_estimator, registered_estimators, save_model
from .netcdf_data import (
    NetCDFDataSet,
    read_dataset,
    read_datasets,
    write_dataset,
    write_datasets,
)
from .text_format import (
    TextData,
    check_score_format,
    format_recommendations,
    index_labels,
    read_index,
    read_recommendations,
    read_text,
    write_index,
    write_text,
)

__all__ = [
    "NetCDFDataSet",
    "TextData",
    "check_score_format",
    "format_recommendations",
    "index_labels",
    "load_model",
    "read_dataset",
    "read_datasets",
    "read_index",
    "read_recommendations",
    "read_text",
    "register_estimator",
    "registered_estimators",
    "save_model",
    "write_dataset",
    "write_datasets",
    "write_index",
    "write_text",
]
