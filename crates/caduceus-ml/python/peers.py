#!/usr/bin/env python3
"""Peer models beside Caduceus's own, on the same rows, features and split.

Usage:
    python peers.py --dataset PATH --split-file FILE [--model rf|river-hst]
                    [--label-column NAME] [--drop-columns A,B,...]
                    [--normal-values 0,normal,BENIGN] [--jobs N]

PATH is a CSV file or a directory of CSVs (read in sorted file-name order, as the Rust loader
does). FILE is the split written by Rust (`caduceus_ml::split::write_split_file`, e.g. through
`cargo run --release -p caduceus-ml --example measure -- --split-file FILE DATASET`); it names
the label column, normal values, feature columns and their kinds, and the train/test row
indices (stratified by label, seed 42, 30 % test). --label-column, --drop-columns and
--normal-values override what the split file says (the feature columns are then every column
but the label and the dropped ones).

Models:
  rf         scikit-learn RandomForestClassifier(n_estimators=100, random_state=0), otherwise
             default settings, fitted on the training rows; F1 etc. at predict() (p >= 0.5),
             ROC AUC from predict_proba.
  river-hst  River HalfSpaceTrees(seed=42) after MinMaxScaler, as River's docs recommend,
             learned without labels on the training rows in order, scored on the test rows;
             ROC AUC from the scores, F1 etc. at the 95th percentile of the training scores
             (as Caduceus's online model picks its threshold).

Cells are read as Caduceus reads them: trimmed; empty, "-", "?", NaN and +-Infinity are
missing (NaN); categorical columns are coded by the order of first appearance in the training
rows, and text unseen in training is missing.

Prints one JSON object: model, precision, recall, f1, roc_auc, accuracy,
confusion_matrix {tp, fp, tn, fn}, rows (test rows), split ("test"), train_rows,
train_seconds, score_seconds.

Requirements (pinned for CI): scikit-learn==1.5.2 numpy pandas river (see the crate's report).
"""

import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import pandas as pd

MISSING = {"", "-", "?", "nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
F32_MAX = float(np.finfo(np.float32).max)


def read_frames(path):
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.csv")) + glob.glob(os.path.join(path, "*.CSV")),
                       key=lambda p: os.path.basename(p).encode())
    else:
        files = [path]
    if not files:
        sys.exit(f"no .csv files in {path}")
    frames = []
    for f in files:
        df = pd.read_csv(f, dtype=str, keep_default_na=False, encoding="utf-8-sig", skip_blank_lines=True)
        df.columns = [c.strip().lstrip("\ufeff").strip() for c in df.columns]
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def missing_mask(col):
    return col.str.lower().isin(MISSING)


def numeric(col):
    col = col.str.strip()
    miss = missing_mask(col)
    vals = pd.to_numeric(col.where(~miss, None), errors="coerce").astype("float64")
    vals = vals.where(np.isfinite(vals), np.nan).clip(-F32_MAX, F32_MAX)
    return vals.astype(np.float32).to_numpy()


def categorical(col, train_idx):
    col = col.str.strip()
    miss = missing_mask(col)
    vocab = {}
    for v in col.iloc[train_idx][~miss.iloc[train_idx]]:
        if v not in vocab:
            vocab[v] = len(vocab)
    codes = col.map(lambda v: vocab.get(v, np.nan)).astype("float64")
    codes[miss] = np.nan
    return codes.astype(np.float32).to_numpy()


def labels_of(col, normal_values):
    lower = {v.strip().lower() for v in normal_values}
    nums = set()
    for v in normal_values:
        try:
            nums.add(float(v))
        except ValueError:
            pass

    def one(v):
        v = v.strip()
        if v.lower() in lower:
            return 0
        try:
            if float(v) in nums:
                return 0
        except ValueError:
            pass
        return 1

    return np.array([one(v) for v in col], dtype=np.int8)


def metrics(y, pred, scores):
    from sklearn.metrics import roc_auc_score

    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    div = lambda a, b: a / b if b else 0.0
    auc = float(roc_auc_score(y, scores)) if len(set(y.tolist())) == 2 else None
    return {
        "precision": div(tp, tp + fp),
        "recall": div(tp, tp + fn),
        "f1": div(2 * tp, 2 * tp + fp + fn),
        "roc_auc": auc,
        "accuracy": div(tp + tn, len(y)),
        "confusion_matrix": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
        "rows": int(len(y)),
        "split": "test",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split-file", required=True)
    ap.add_argument("--model", default="rf", choices=["rf", "river-hst"])
    ap.add_argument("--label-column")
    ap.add_argument("--drop-columns")
    ap.add_argument("--normal-values")
    ap.add_argument("--jobs", type=int, default=None, help="RandomForest n_jobs (default: scikit-learn's)")
    ap.add_argument("--seed", type=int, default=42, help="HalfSpaceTrees seed (default 42)")
    args = ap.parse_args()

    with open(args.split_file) as f:
        split = json.load(f)
    if split.get("format") != "caduceus-split" or split.get("version") != 1:
        sys.exit("not a caduceus-split version 1 file")
    df = read_frames(args.dataset)
    if len(df) != split["rows"]:
        sys.exit(f"dataset has {len(df)} rows, split file says {split['rows']}")
    label_col = args.label_column or split["label_column"]
    normal = args.normal_values.split(",") if args.normal_values else split["normal_values"]
    if args.label_column or args.drop_columns:
        drops = set(args.drop_columns.split(",")) if args.drop_columns else set(split["dropped_columns"])
        features = [c for c in df.columns if c != label_col and c not in drops]
        kinds = {}
        for c in features:
            col = df[c].str.strip()
            rest = col[~missing_mask(col)]
            kinds[c] = "numeric" if pd.to_numeric(rest, errors="coerce").notna().all() else "categorical"
    else:
        features = [f["name"] for f in split["features"]]
        kinds = {f["name"]: f["kind"] for f in split["features"]}
    train_idx = np.array(split["train"], dtype=np.int64)
    test_idx = np.array(split["test"], dtype=np.int64)

    y = labels_of(df[label_col], normal)
    if int(y[train_idx].sum()) != split["train_attacks"] or int(y[test_idx].sum()) != split["test_attacks"]:
        sys.exit("labels differ from the split file's (other label column or normal values?)")
    cols = [numeric(df[c]) if kinds[c] == "numeric" else categorical(df[c], train_idx) for c in features]
    X = np.column_stack(cols) if cols else np.zeros((len(df), 0), dtype=np.float32)
    Xtr, ytr, Xte, yte = X[train_idx], y[train_idx], X[test_idx], y[test_idx]

    if args.model == "rf":
        from sklearn.ensemble import RandomForestClassifier

        model = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=args.jobs)
        t0 = time.perf_counter()
        model.fit(Xtr, ytr)
        t1 = time.perf_counter()
        proba = model.predict_proba(Xte)[:, 1]
        pred = model.predict(Xte).astype(np.int8)
        t2 = time.perf_counter()
        out = {"model": "sklearn-rf"}
        out.update(metrics(yte, pred, proba))
    else:
        from river import anomaly, compose, preprocessing

        model = compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=args.seed))

        def rows(M):
            for r in M:
                yield {i: float(v) for i, v in enumerate(r) if not np.isnan(v)}

        t0 = time.perf_counter()
        train_scores = []
        for x in rows(Xtr):
            model.learn_one(x)
        t1 = time.perf_counter()
        for x in rows(Xtr[:: max(1, len(Xtr) // 20000)]):
            train_scores.append(model.score_one(x))
        threshold = float(np.quantile(np.array(train_scores), 0.95)) if train_scores else 0.5
        scores = np.array([model.score_one(x) for x in rows(Xte)])
        t2 = time.perf_counter()
        pred = (scores >= threshold).astype(np.int8)
        out = {"model": "river-hst", "seed": args.seed}
        out.update(metrics(yte, pred, scores))
        out["threshold"] = threshold
    out["train_rows"] = int(len(train_idx))
    out["train_seconds"] = round(t1 - t0, 3)
    out["score_seconds"] = round(t2 - t1, 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
