"""An independent oracle: the node's answers against DuckDB (issue 25).

Seeded Parquet files with hostile values (NaN, +-inf, -0.0, integers at their
extremes, wide decimals, NULL-only row groups, dictionary and view strings,
unicode, time zones), written with statistics on in some files and off in
others, small row groups and tiny pages. A seeded grammar writes filters,
projections and limits; every case is answered by

- the node on a **cold** read: a node with the hot tier off (`--cache-hot 0`),
  so every scan decodes Parquet (pruning, page index, filter pushdown);
- the node **warm**: a second node with the hot tier on, warmed first until
  its `stats` report the scans as hot hits, so the case is evaluated over the
  decoded arrays of the hot tier;
- **Flight SQL** through ADBC on every tenth case (`QUIVER_ORACLE_SQL_EVERY`),
  `SELECT ... FROM local.oracle.t WHERE ... [LIMIT n]`;

and by DuckDB, which loads the same Parquet files into its own tables (so
its own Parquet pruning plays no part) and runs the same filter. Results are
compared as multisets of rows, with NaN equal to NaN, -0.0 equal to 0.0,
decimals by value and timestamps as UTC instants. With a limit, only the row
count (min(limit, matches)) and that every row returned is one of DuckDB's
are checked.

The semantics the node documents, and DuckDB follows: floats in a total
order where NaN = NaN, NaN is above +inf and -0.0 = 0.0; SQL's three-valued
NULL logic; integer and decimal overflow is an error (InvalidArgument
mentioning overflow), never a wrapped value. Where the two dialects differ,
the filter is written so both mean the same (see `FILTER RULES` below), and
where DuckDB differs from the documented semantics the rule applied is said
in a comment (see the overflow notes above `Risky`).

The cold answer comes from a node of its own rather than from the warm
node's first read: the hot tier admits a column chunk on its second miss and
fills it in the background, so on one node which path answered a case would
depend on timing.

Environment: QUIVER_ORACLE_SEED (default 25), QUIVER_ORACLE_CASES (2000),
QUIVER_ORACLE_SQL_EVERY (10), QUIVER_ORACLE_WORKERS (4). A failure lists
every mismatch (seed, case, file, filter in both dialects, projection,
limit, a short diff), grouped by class; the full list is also written as
JSON lines next to the servers' logs.
"""

import collections
import datetime
import decimal
import json
import math
import os
import random
import shutil
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as fl
import pyarrow.parquet as pq
import pytest

from conftest import Server

D = decimal.Decimal
EXACT = decimal.Context(prec=120)  # decimal contexts are per thread; this one is passed explicitly

SEED = int(os.environ.get("QUIVER_ORACLE_SEED", "25"))
CASES = int(os.environ.get("QUIVER_ORACLE_CASES", "2000"))
SQL_EVERY = max(1, int(os.environ.get("QUIVER_ORACLE_SQL_EVERY", "10")))
WORKERS = max(1, int(os.environ.get("QUIVER_ORACLE_WORKERS", "4")))

SCHEMA, TABLE = "oracle", "t"
PREFIX = f"{SCHEMA}/{TABLE}/"
EPOCH = datetime.datetime(1970, 1, 1)
# Timestamps stay inside 1900..2200: DataFusion types `TIMESTAMP '...'`
# literals as nanoseconds, so a value outside 1677..2262 would not fit the
# comparison's common type (a DataFusion limit, not a semantic difference).
TS_LO = int((datetime.datetime(1900, 1, 1) - EPOCH).total_seconds()) * 10**6
TS_HI = int((datetime.datetime(2200, 1, 1) - EPOCH).total_seconds()) * 10**6
DATE_LO = (datetime.date(1900, 1, 1) - datetime.date(1970, 1, 1)).days
DATE_HI = (datetime.date(2100, 12, 31) - datetime.date(1970, 1, 1)).days
F32_MAX = 3.4028234663852886e38


def f32(x: float) -> float:
    """x rounded to the nearest float32."""
    if math.isnan(x) or math.isinf(x):
        return x
    if abs(x) > F32_MAX:
        return math.copysign(F32_MAX, x)
    return struct.unpack("<f", struct.pack("<f", x))[0]


# --- columns -----------------------------------------------------------------


@dataclass(frozen=True)
class Col:
    name: str
    kind: str  # bool int uint float decimal date ts tstz str
    arrow: pa.DataType
    bits: int = 0
    precision: int = 0
    scale: int = 0
    tz: str = ""

    @property
    def lo(self) -> int:
        return -(2 ** (self.bits - 1)) if self.kind == "int" else 0

    @property
    def hi(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.kind == "int" else 2**self.bits - 1


COLS = [
    Col("k", "int", pa.int64(), bits=64),  # the row's number: unique, never NULL
    Col("b", "bool", pa.bool_()),
    Col("i8", "int", pa.int8(), bits=8),
    Col("i16", "int", pa.int16(), bits=16),
    Col("i32", "int", pa.int32(), bits=32),
    Col("i64", "int", pa.int64(), bits=64),
    Col("u8", "uint", pa.uint8(), bits=8),
    Col("u16", "uint", pa.uint16(), bits=16),
    Col("u32", "uint", pa.uint32(), bits=32),
    Col("u64", "uint", pa.uint64(), bits=64),
    Col("f32", "float", pa.float32(), bits=32),
    Col("f64", "float", pa.float64(), bits=64),
    Col("d18", "decimal", pa.decimal128(18, 4), precision=18, scale=4),
    Col("d38", "decimal", pa.decimal128(38, 10), precision=38, scale=10),
    Col("dt", "date", pa.date32()),
    Col("ts", "ts", pa.timestamp("us")),
    Col("tsu", "tstz", pa.timestamp("us", tz="UTC"), tz="UTC"),
    Col("tsk", "tstz", pa.timestamp("us", tz="Asia/Kolkata"), tz="Asia/Kolkata"),
    Col("s", "str", pa.string()),
    Col("sd", "str", pa.dictionary(pa.int32(), pa.string())),
    Col("sv", "str", pa.string_view()),
    Col("nul", "int", pa.int32(), bits=32),  # NULL in every row
]
BY_NAME = {c.name: c for c in COLS}

# Strings: ASCII, accents, CJK, emoji, LIKE's own % and _, a quote. Left out
# on purpose: backslashes (DataFusion's LIKE treats `\` as its escape
# character by default, DuckDB has no default escape) and letters whose
# case-insensitive match differs between the engines' ILIKE (DataFusion folds
# with Unicode simple case folding, so `ς ILIKE 'Σ'` is true; DuckDB lowers
# both sides, so it is false; likewise `İ`, `ß`, the Kelvin and Ohm signs).
VOCAB = [
    "", "a", "A", "ab", "abc", "ABC", "abd", "Abc", "apple", "Apple pie", "banana", "BANANA", "x_y", "x-y",
    "50%", "100%", "it's", "hé", "HÉ", "héllo", "Héllo", "Ñandú", "ñandú", "øl", "ØL", "ωmega", "Ωmega",
    "日本", "日本語", "語", "🦀", "🦀rust", "rust🦀", " lead", "trail ", "NULL", "nan", "NaN", "0", "-1",
    "zz", "zzz", "m", "mm", "mango", "Mango",
]
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _%-éÉñÑωΩ日本🦀"
DICT_VOCAB = ["red", "green", "blue", "Red", "GREEN", "héllo", "🦀", "", "x_y", "50%"]


# --- data --------------------------------------------------------------------


def gen_int(rng, col, n, regime):
    lo, hi = col.lo, col.hi
    if regime == "wide":
        return [rng.randint(lo, hi) for _ in range(n)]
    if regime == "small":
        a, b = max(lo, -100), min(hi, 100)
        return [rng.randint(a, b) for _ in range(n)]
    width = rng.choice([5, 50, 1000, 10**6])
    start = rng.randint(lo, max(lo, hi - width))
    vals = [rng.randint(start, min(hi, start + width)) for _ in range(n)]
    if regime == "edge":
        specials = [lo, hi, lo + 1, hi - 1, 0, 1] + ([-1] if col.kind == "int" else [])
        for _ in range(max(1, n // 20)):
            vals[rng.randrange(n)] = rng.choice(specials)
    return vals


def gen_float(rng, col, n, regime):
    def rnd():
        return rng.uniform(-10, 10)

    if regime == "allnan":
        vals = [math.nan] * n
    elif regime == "zeros":
        vals = [rng.choice([0.0, -0.0, 1.0, -1.0, 0.5]) for _ in range(n)]
    elif regime == "wide":
        vals = [rng.choice([-1, 1]) * 10 ** rng.uniform(-30, 30) for _ in range(n)]
    else:
        centre = rng.uniform(-1000, 1000)
        vals = [centre + rnd() for _ in range(n)]
        if regime == "nan":
            # NaN among otherwise small values: Parquet statistics leave NaN
            # out of min/max, so pruning on them must not drop these rows.
            for _ in range(max(1, n // 25)):
                vals[rng.randrange(n)] = math.nan
        elif regime == "special":
            specials = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e300 if col.bits == 64 else F32_MAX, -1e-300]
            for _ in range(max(1, n // 10)):
                vals[rng.randrange(n)] = rng.choice(specials)
        elif regime == "signedzero":
            for _ in range(max(1, n // 5)):
                vals[rng.randrange(n)] = rng.choice([-0.0, 0.0])
    if col.bits == 32:
        vals = [f32(v) for v in vals]
    return vals


def gen_decimal(rng, col, n, regime):
    top = 10**col.precision - 1
    if regime == "wide":
        unscaled = [rng.randint(-top, top) for _ in range(n)]
    elif regime == "half" and col.precision == 38:
        # Sums of two of these exceed 38 digits but not i128's range, so an
        # unchecked addition would produce a value no Decimal(38) can hold.
        unscaled = [rng.choice([-1, 1]) * rng.randint(5 * 10**37, 8 * 10**37) for _ in range(n)]
    elif regime == "edge":
        unscaled = [rng.randint(-10**6, 10**6) for _ in range(n)]
        for _ in range(max(1, n // 20)):
            unscaled[rng.randrange(n)] = rng.choice([top, -top, 0, 1, -1, top - 1])
    else:
        width = rng.choice([10, 10**4, 10**8])
        start = rng.randint(-top, top - width)
        unscaled = [rng.randint(start, start + width) for _ in range(n)]
    return [D(u).scaleb(-col.scale, EXACT) for u in unscaled]


def gen_str(rng, n, regime):
    if regime == "vocab":
        return [rng.choice(VOCAB) for _ in range(n)]
    if regime == "narrow":
        head = rng.choice(["m", "b", "日", "é", "Z"])
        return [head + "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 4))) for _ in range(n)]
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 8))) for _ in range(n)]


REGIMES = {
    "int": ["wide", "small", "narrow", "edge"],
    "uint": ["wide", "small", "narrow", "edge"],
    "float": ["narrow", "nan", "special", "signedzero", "zeros", "wide", "allnan"],
    "decimal": ["wide", "half", "edge", "narrow"],
    "str": ["vocab", "narrow", "random"],
}


def gen_values(rng, col, n):
    """One row group's values of `col` (python values, None for NULL)."""
    if col.name == "nul":
        return [None] * n
    kind = col.kind
    if kind == "bool":
        mode = rng.choice(["true", "false", "mixed", "mixed"])
        vals = [True if mode == "true" else False if mode == "false" else rng.random() < 0.5 for _ in range(n)]
    elif kind in ("int", "uint"):
        vals = gen_int(rng, col, n, rng.choice(REGIMES[kind]))
    elif kind == "float":
        vals = gen_float(rng, col, n, rng.choice(REGIMES["float"]))
    elif kind == "decimal":
        vals = gen_decimal(rng, col, n, rng.choice(REGIMES["decimal"]))
    elif kind == "date":
        if rng.random() < 0.5:
            start = rng.randint(DATE_LO, DATE_HI - 400)
            vals = [rng.randint(start, start + 365) for _ in range(n)]
        else:
            vals = [rng.randint(DATE_LO, DATE_HI) for _ in range(n)]
        for _ in range(max(1, n // 30)):
            vals[rng.randrange(n)] = rng.choice([0, -1, 1, DATE_LO, DATE_HI, 11016])  # 2000-02-29
    elif kind in ("ts", "tstz"):
        if rng.random() < 0.5:
            start = rng.randint(TS_LO, TS_HI - 10**11)
            vals = [rng.randint(start, start + 10**11) for _ in range(n)]
        else:
            vals = [rng.randint(TS_LO, TS_HI) for _ in range(n)]
        for _ in range(max(1, n // 30)):
            vals[rng.randrange(n)] = rng.choice([0, -1, 1, TS_LO, TS_HI - 1, 946684800 * 10**6])
    elif col.name == "sd":
        vals = [rng.choice(DICT_VOCAB) for _ in range(n)]
    else:
        vals = gen_str(rng, n, rng.choice(REGIMES["str"]))
    null_rate = rng.choice([0.0, 0.0, 0.05, 0.3])
    return [None if rng.random() < null_rate else v for v in vals]


def to_arrow(col, vals):
    if col.kind == "date":
        return pa.array(vals, pa.int32()).cast(pa.date32())
    if col.kind in ("ts", "tstz"):
        return pa.array(vals, pa.int64()).cast(col.arrow)
    if col.name == "sd":
        return pa.array(vals, pa.string()).dictionary_encode()
    return pa.array(vals, col.arrow)


# Three files of one table, written differently. Statistics off in one (no
# pruning at all), on with the page index in another; dictionary encoding on
# everywhere, nowhere, and for a few columns (with a small dictionary page
# limit, so some chunks fall back to plain pages midway); data page v1 and
# v2; tiny pages (write_batch_size makes the page size limit bite).
FILES = [
    dict(name="part-0.parquet", rows=1200, row_group_size=100,
         options=dict(write_statistics=True, use_dictionary=True, write_page_index=True, data_page_size=256,
                      write_batch_size=32, dictionary_pagesize_limit=256, compression="snappy")),
    dict(name="part-1.parquet", rows=1600, row_group_size=400,
         options=dict(write_statistics=False, use_dictionary=False, data_page_size=512, write_batch_size=64,
                      compression="none")),
    dict(name="part-2.parquet", rows=1500, row_group_size=250,
         options=dict(write_statistics=True, use_dictionary=["s", "sd", "sv", "i16", "f64"], data_page_size=128,
                      write_batch_size=16, data_page_version="2.0", compression="zstd")),
]


@dataclass
class Dataset:
    files: list  # (name, {column: python values})
    tables: list  # pyarrow tables, as written
    pools: dict  # column -> sample of non-NULL values, for literals


def generate(seed: int, out_dir: Path) -> Dataset:
    rng = random.Random(f"data-{seed}")
    out_dir.mkdir(parents=True, exist_ok=True)
    files, tables = [], []
    pools = {c.name: [] for c in COLS}
    k = 0
    for spec in FILES:
        n, rg = spec["rows"], spec["row_group_size"]
        values = {c.name: [] for c in COLS}
        groups = list(range(0, n, rg))
        # One or two row groups where about half the columns are all NULL.
        null_groups = set(rng.sample(range(len(groups)), min(len(groups), rng.choice([1, 2]))))
        for gi, start in enumerate(groups):
            size = min(rg, n - start)
            nulled = {c.name for c in COLS[1:] if rng.random() < 0.5} if gi in null_groups else set()
            for c in COLS:
                if c.name == "k":
                    vals = list(range(k, k + size))
                elif c.name in nulled:
                    vals = [None] * size
                else:
                    vals = gen_values(rng, c, size)
                values[c.name].extend(vals)
            k += size
        table = pa.table({c.name: to_arrow(c, values[c.name]) for c in COLS})
        pq.write_table(table, out_dir / spec["name"], row_group_size=rg, **spec["options"])
        for c in COLS:
            present = [v for v in values[c.name] if v is not None]
            pools[c.name].extend(rng.sample(present, min(len(present), 200)))
        files.append((spec["name"], values))
        tables.append(table)
    return Dataset(files, tables, pools)


# --- literals and the two dialects -------------------------------------------
#
# FILTER RULES. Every filter is produced twice, for DataFusion (the node's
# dialect, also Flight SQL's) and for DuckDB, with the same meaning:
# - every literal is typed with an explicit CAST to the column's own type, so
#   neither engine's literal typing (DuckDB binds `1` to the other operand's
#   type, DataFusion makes it Int64) changes the type arithmetic runs in;
# - floats are cast from strings: DuckDB reads `-0.0` as the decimal 0 (so
#   `CAST(-0.0 AS DOUBLE)` is +0.0 there) and converts a long decimal
#   literal to DOUBLE by a division that can be off by one unit in the last
#   place; `CAST('...' AS DOUBLE)` parses, correctly rounded, the same in
#   both. Untyped literals are generated on purpose too, where both read
#   them the same (`bare`);
# - unsigned types are `TINYINT UNSIGNED` ... in DataFusion, `UTINYINT` ...
#   in DuckDB; integer division is `/` in DataFusion and `//` in DuckDB
#   (DuckDB's `/` is a floating division);
# - a time-zone-aware column is compared with an instant written with its
#   UTC offset: a bare `TIMESTAMP '...'` against it is read in the column's
#   zone by DataFusion and in the session's zone by DuckDB;
# - decimals are never multiplied: DuckDB types DECIMAL(18,4) * DECIMAL(18,4)
#   as DECIMAL(18,8) (and fails when a product needs more digits), DataFusion
#   as Decimal(37,8), so the same product overflows in one and not the other.


@dataclass
class Expr:
    df: str
    dk: str
    tags: frozenset = frozenset()

    def wrap(self, fmt: str, tags=()):
        return Expr(fmt.format(self.df), fmt.format(self.dk), self.tags | frozenset(tags))


def both(text: str, tags=()) -> Expr:
    return Expr(text, text, frozenset(tags))


def join(fmt: str, parts, tags=()) -> Expr:
    tags = frozenset(tags).union(*(p.tags for p in parts))
    return Expr(fmt.format(*(p.df for p in parts)), fmt.format(*(p.dk for p in parts)), tags)


UNSIGNED = {8: ("TINYINT UNSIGNED", "UTINYINT"), 16: ("SMALLINT UNSIGNED", "USMALLINT"),
            32: ("INT UNSIGNED", "UINTEGER"), 64: ("BIGINT UNSIGNED", "UBIGINT")}
SIGNED = {8: "TINYINT", 16: "SMALLINT", 32: "INTEGER", 64: "BIGINT"}


def type_names(col: Col):
    if col.kind == "int":
        return SIGNED[col.bits], SIGNED[col.bits]
    if col.kind == "uint":
        return UNSIGNED[col.bits]
    if col.kind == "float":
        return ("FLOAT", "FLOAT") if col.bits == 32 else ("DOUBLE", "DOUBLE")
    if col.kind == "decimal":
        t = f"DECIMAL({col.precision},{col.scale})"
        return t, t
    if col.kind == "bool":
        return "BOOLEAN", "BOOLEAN"
    if col.kind == "date":
        return "DATE", "DATE"
    if col.kind == "ts":
        return "TIMESTAMP", "TIMESTAMP"
    return "VARCHAR", "VARCHAR"


def quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def float_text(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)


def lit(rng, col: Col, v) -> Expr:
    """`v` as a literal of `col`'s type in both dialects."""
    if v is None:
        tdf, tdk = type_names(col)
        if col.kind == "tstz":
            return both("NULL", ["null-literal"])
        return Expr(f"CAST(NULL AS {tdf})", f"CAST(NULL AS {tdk})", frozenset(["null-literal"]))
    tdf, tdk = type_names(col)
    kind = col.kind
    if kind in ("int", "uint"):
        tags = ["negative-literal"] if v < 0 else []
        return Expr(f"CAST({v} AS {tdf})", f"CAST({v} AS {tdk})", frozenset(tags))
    if kind == "float":
        text = float_text(v)
        tags = set()
        if math.isnan(v):
            tags.add("nan-literal")
            if rng.random() < 0.5:
                return Expr(f"'NaN'::{tdf.lower()}", f"'NaN'::{tdk.lower()}", frozenset(tags))
        elif math.isinf(v):
            tags.add("inf-literal")
        elif v == 0 and math.copysign(1, v) < 0:
            tags.add("negzero-literal")
        if v < 0:
            tags.add("negative-literal")
        return Expr(f"CAST('{text}' AS {tdf})", f"CAST('{text}' AS {tdk})", frozenset(tags))
    if kind == "decimal":
        text = format(v, "f")
        tags = ["negative-literal"] if v < 0 else []
        return Expr(f"CAST('{text}' AS {tdf})", f"CAST('{text}' AS {tdk})", frozenset(tags))
    if kind == "bool":
        return both("TRUE" if v else "FALSE")
    if kind == "date":
        return both(f"DATE '{(datetime.date(1970, 1, 1) + datetime.timedelta(days=v)).isoformat()}'")
    if kind == "ts":
        when = EPOCH + datetime.timedelta(microseconds=v)
        return both(f"TIMESTAMP '{when.isoformat(sep=' ', timespec='microseconds')}'")
    if kind == "tstz":
        offset = datetime.timezone(datetime.timedelta(minutes=rng.choice([0, 0, 330, -480, 345])))
        when = (EPOCH.replace(tzinfo=datetime.timezone.utc) + datetime.timedelta(microseconds=v)).astimezone(offset)
        return Expr(quote(when.isoformat(timespec="microseconds")),
                    f"TIMESTAMPTZ {quote(when.isoformat(sep=' ', timespec='microseconds'))}")
    return both(quote(v))


def specials(col: Col):
    if col.kind in ("int", "uint"):
        return [col.lo, col.hi, 0, 1, col.lo + 1, col.hi - 1] + ([-1, -100] if col.kind == "int" else [])
    if col.kind == "float":
        return [math.nan, math.inf, -math.inf, -0.0, 0.0, 1.0, -1.0]
    if col.kind == "decimal":
        top = D(10**col.precision - 1).scaleb(-col.scale, EXACT)
        return [top, top.copy_negate(), D(0), D("-0.0001"), D("1.5")]
    if col.kind == "date":
        return [0, -1, DATE_LO, DATE_HI]
    if col.kind in ("ts", "tstz"):
        return [0, -1, 1, TS_LO]
    if col.kind == "str":
        return ["", "a", "é", "🦀", "zzzz", "NaN"]
    return [True, False]


def value(rng, ds: Dataset, col: Col):
    """A value for a literal: mostly one in the data, else an edge."""
    pool = ds.pools[col.name]
    r = rng.random()
    if pool and r < 0.6:
        return rng.choice(pool)
    if r < 0.9:
        return rng.choice(specials(col))
    fresh = gen_values(random.Random(rng.random()), col, 1)[0]
    return fresh if fresh is not None else rng.choice(specials(col))


# --- the filter grammar -------------------------------------------------------

CMP = ["=", "<>", "<", "<=", ">", ">="]
ORDERED = ("int", "uint", "float", "decimal", "date", "ts", "tstz", "str")
NUMERIC = ("int", "uint", "float", "decimal")


def colref(col: Col) -> Expr:
    return Expr(col.name, col.name, frozenset([f"col:{col.kind}"] + (["dict"] if col.name == "sd" else [])
                                              + (["view"] if col.name == "sv" else [])))


def like_pattern(rng, ds: Dataset, col: Col) -> str:
    s = value(rng, ds, col)
    s = s if isinstance(s, str) else "a"
    choice = rng.random()
    if choice < 0.3 and s:
        pattern = s[: rng.randint(0, len(s))] + "%"
    elif choice < 0.55 and s:
        i = rng.randrange(len(s))
        pattern = "%" + s[i: i + rng.randint(1, 3)] + "%"
    elif choice < 0.75 and s:
        chars = list(s)
        chars[rng.randrange(len(chars))] = "_"
        pattern = "".join(chars)
    elif choice < 0.85:
        pattern = rng.choice(["%", "_", "", "%%", "_%", "%_", "%a%", "A%", "日%", "%🦀"])
    else:
        pattern = s
    return pattern


def swap_case(rng, s: str) -> str:
    return "".join(ch.swapcase() if rng.random() < 0.5 else ch for ch in s)


def atom(rng, ds: Dataset, col: Col) -> Expr:
    c = colref(col)
    kind = col.kind
    options = ["cmp", "cmp", "cmp", "isnull", "distinct", "in"]
    if kind in ORDERED:
        options += ["between", "cmp"]
    if kind == "str":
        options += ["like", "like", "ilike"]
    if kind in NUMERIC and col.name not in ("k", "nul"):
        options += ["arith", "arith"]
    if kind in NUMERIC or kind in ("date", "str"):
        options += ["case", "simple-case"]
    if kind == "float":
        options += ["isnan"]
    if kind == "bool":
        options += ["bare", "bare", "istrue"]
    pick = rng.choice(options)
    if pick == "cmp":
        op = rng.choice(CMP if kind != "bool" else ["=", "<>"])
        v = lit(rng, col, value(rng, ds, col))
        if rng.random() < 0.15 and kind in NUMERIC:
            v = bare(rng, ds, col)
        if rng.random() < 0.2:
            return join("{} " + op + " {}", [v, c], ["cmp", "literal-first"])
        return join("{} " + op + " {}", [c, v], ["cmp"])
    if pick == "isnull":
        return c.wrap("{} IS NOT NULL" if rng.random() < 0.5 else "{} IS NULL", ["isnull"])
    if pick == "distinct":
        v = None if rng.random() < 0.2 else value(rng, ds, col)
        neg = "NOT " if rng.random() < 0.5 else ""
        return join("{} IS " + neg + "DISTINCT FROM {}", [c, lit(rng, col, v)], ["distinct"])
    if pick == "in" and kind in ("int", "uint") and rng.random() < 0.15:
        # A long list of untyped numbers, most of them negative: a sign is
        # part of its number, not an operator counted against the filter's
        # limit of 256 (protocol.md §1), and each is read exactly.
        items = [-abs(value(rng, ds, col)) if rng.random() < 0.8 else value(rng, ds, col)
                 for _ in range(rng.randint(20, 300))]
        neg = "NOT " if rng.random() < 0.4 else ""
        tags = ["in-list", "long-in-list", "bare-literal", "negative-literal"] + (["not-in"] if neg else [])
        return c.wrap("{} " + neg + "IN (" + ", ".join(str(v) for v in items) + ")", tags)
    if pick == "in":
        items = [value(rng, ds, col) for _ in range(rng.randint(1, 6))]
        if rng.random() < 0.3:
            items.append(None)
        parts = [both("NULL", ["null-in-list"]) if v is None else lit(rng, col, v) for v in items]
        neg = "NOT " if rng.random() < 0.4 else ""
        tags = ["in-list"] + (["not-in"] if neg else [])
        return join("{} " + neg + "IN (" + ", ".join("{}" for _ in parts) + ")", [c, *parts], tags)
    if pick == "between":
        a, b = value(rng, ds, col), value(rng, ds, col)
        if rng.random() < 0.8:
            try:
                a, b = sorted([a, b], key=lambda x: (isinstance(x, float) and math.isnan(x), x))
            except TypeError:
                pass
        neg = "NOT " if rng.random() < 0.3 else ""
        return join("{} " + neg + "BETWEEN {} AND {}", [c, lit(rng, col, a), lit(rng, col, b)], ["between"])
    if pick in ("like", "ilike"):
        pattern = like_pattern(rng, ds, col)
        if pick == "ilike":
            pattern = swap_case(rng, pattern)
        neg = "NOT " if rng.random() < 0.3 else ""
        op = "ILIKE" if pick == "ilike" else "LIKE"
        return c.wrap("{} " + neg + op + " " + quote(pattern), [pick])
    if pick == "isnan":
        return c.wrap("isnan({})" if rng.random() < 0.6 else "NOT isnan({})", ["isnan"])
    if pick == "bare":
        return c.wrap("{}" if rng.random() < 0.5 else "NOT {}", ["bool"])
    if pick == "istrue":
        return c.wrap(rng.choice(["{} IS TRUE", "{} IS NOT TRUE", "{} IS FALSE", "{} IS NOT FALSE"]), ["bool"])
    if pick == "simple-case":
        # CASE x WHEN a ... compares x = a in the same total order as `=`.
        a, b = lit(rng, col, value(rng, ds, col)), lit(rng, col, value(rng, ds, col))
        return join("CASE {} WHEN {} THEN TRUE WHEN {} THEN FALSE ELSE {} END",
                    [c, a, b, predicate(rng, ds, 2)], ["simple-case"])
    if pick == "case":
        cond = predicate(rng, ds, 2)
        other = lit(rng, col, value(rng, ds, col))
        op = rng.choice(CMP)
        return join("CASE WHEN {} THEN {} ELSE {} END " + op + " {}",
                    [cond, c, other, lit(rng, col, value(rng, ds, col))], ["case"])
    return safe_arith(rng, ds, col)


def bare(rng, ds: Dataset, col: Col) -> Expr:
    """An untyped literal, as the documented semantics read it: exact. An
    integer beyond its column's range (beyond 64 bits for 64-bit columns)
    compares as the number it is; an unquoted number with a fraction is a
    decimal, exact against a decimal column and the nearest float against a
    float column; `'NaN'`, `'inf'` and `'-inf'` are strings read as floats.
    DuckDB reads them all the same way (a short unquoted fraction is a
    DECIMAL converted to the nearest FLOAT or DOUBLE)."""
    tags = ["bare-literal"]
    if col.kind in ("int", "uint"):
        v = rng.choice([col.lo - 1, col.hi + 1, col.lo, col.hi, -1, 0, value(rng, ds, col)])
        return both(str(v), tags + (["negative-literal"] if v < 0 else []))
    if col.kind == "decimal":
        return both(format(value(rng, ds, col), "f"), tags)
    texts = ["'NaN'", "'inf'", "'-inf'", "0.1", "-0.5", "12.5", "-0.0", "0", "3.14159", "1000.001", "1e3"]
    if col.bits == 64:
        # DuckDB types a number with an exponent as DOUBLE, not as the
        # nearest FLOAT, so these are only compared with DOUBLE columns.
        texts += ["2.5e-3", "-1e300", "1.7976931348623157e308"]
    text = rng.choice(texts)
    return both(text, tags + (["nan-literal"] if "NaN" in text else []))


BIG = Col("_big", "int", pa.int64(), bits=64)
DBL = Col("_dbl", "float", pa.float64(), bits=64)


def safe_arith(rng, ds: Dataset, col: Col) -> Expr:
    """Arithmetic that cannot overflow on any value: it may stand anywhere
    (under AND, OR, CASE), where the rows it is evaluated on depend on the
    engine's short-circuiting."""
    c = colref(col)
    if col.kind == "float":
        op = rng.choice(["+", "-", "*"])
        operand = lit(rng, col, f32(rng.choice([0.5, 2.0, -1.0, 3.25, 1e10, -1e-10]))
                      if col.bits == 32 else rng.choice([0.5, 2.0, -1.0, 3.25, 1e300, -1e-300]))
        expr = join("({} " + op + " {})", [c, operand], ["arith", "float-arith"])
        r = rng.random()
        if r < 0.2:
            expr = c.wrap("(-{})", ["arith", "neg"])
        elif r < 0.3:
            # inf - inf is a NaN made by the CPU (on x86 with its sign bit set).
            expr = join("({} - {})", [c, c], ["arith", "float-arith", "made-nan"])
        return join("{} " + rng.choice(CMP) + " {}", [expr, lit(rng, col, value(rng, ds, col))])
    if col.kind == "decimal" and col.precision == 18:
        # DECIMAL(18,4) +- DECIMAL(18,4) is DECIMAL(19,4) in both: no overflow.
        op = rng.choice(["+", "-"])
        other = c if rng.random() < 0.3 else lit(rng, col, value(rng, ds, col))
        expr = join("({} " + op + " {})", [c, other], ["arith", "decimal-arith"])
        bound = lit(rng, Col("_d19", "decimal", pa.decimal128(19, 4), precision=19, scale=4),
                    value(rng, ds, col))
        return join("{} " + rng.choice(CMP) + " {}", [expr, bound])
    if col.kind in ("int", "uint") and col.bits <= 32:
        # Widened to BIGINT first: |x| < 2^32 and |literal| <= 1000.
        op = rng.choice(["+", "-", "*", "/", "%"])
        n = rng.randint(-1000, 1000) or 7
        if op == "%":
            n = abs(n) or 7
        wide = c.wrap("CAST({} AS BIGINT)")
        if op == "/":
            expr = Expr(f"({wide.df} / CAST({n} AS BIGINT))", f"({wide.dk} // CAST({n} AS BIGINT))",
                        wide.tags | {"arith", "int-division"})
        else:
            expr = join("({} " + op + " CAST(" + str(n) + " AS BIGINT))", [wide], ["arith", "int-arith"])
        sample = value(rng, ds, col)
        bound = {"+": sample + n, "-": sample - n, "*": sample * n}.get(op, sample // max(1, abs(n)))
        bound += rng.choice([0, 0, 1, -1])
        return join("{} " + rng.choice(CMP) + " {}", [expr, lit(rng, BIG, bound)])
    # Wide integers and DECIMAL(38): only through the risky path; compare plainly.
    return join("{} " + rng.choice(CMP) + " {}", [c, lit(rng, col, value(rng, ds, col))], ["cmp"])


def predicate(rng, ds: Dataset, depth: int = 0) -> Expr:
    r = rng.random()
    if depth < 2 and r < 0.30:
        op = rng.choice(["AND", "OR"])
        return join("({}) " + op + " ({})", [predicate(rng, ds, depth + 1), predicate(rng, ds, depth + 1)],
                    [op.lower()])
    if depth < 2 and r < 0.37:
        return predicate(rng, ds, depth + 1).wrap("NOT ({})", ["not"])
    if depth < 2 and r < 0.40:
        parts = [predicate(rng, ds, 2) for _ in range(3)]
        return join("CASE WHEN {} THEN {} ELSE {} END", parts, ["bool-case"])
    col = rng.choice([c for c in COLS if c.name != "nul"] + [BY_NAME["nul"]] * (rng.random() < 0.05))
    return atom(rng, ds, col)


# --- arithmetic that may overflow --------------------------------------------
#
# Overflow makes the whole scan an error, so whether a filter fails depends
# on which rows its arithmetic is evaluated on. Both engines short-circuit
# AND, OR and CASE over batches and rows in their own ways, and the node
# skips row groups by statistics, so arithmetic that can overflow is only
# generated as the whole filter (possibly under NOT), without a limit, where
# both evaluate it on every non-NULL row. Whether it overflows is decided
# here, in Python, exactly; that decision is the expected answer.
#
# Documented semantics over DuckDB: DuckDB's optimizer moves constants across
# comparisons (`i64 + 1 > 0` becomes `i64 > -1`, `-i8 > 0` becomes
# `i8 < 0`), so for those it answers without evaluating the arithmetic and
# never overflows. The node documents overflow as an error, so that rule
# applies: when Python finds an overflowing row, the node must fail with
# InvalidArgument mentioning overflow. DuckDB with that rewrite turned off
# (`disabled_optimizers = 'expression_rewriter'`) must agree with Python; if
# it does not, the test itself is wrong and says so.


@dataclass
class Risky:
    op: str  # + - * / neg abs
    column: str
    other: object  # None, ("col", name) or ("lit", value)
    lo: int | D = 0
    hi: int | D = 0

    def overflows(self, ds: Dataset, files) -> bool:
        # Decimal contexts are per thread: exact arithmetic needs its own.
        with decimal.localcontext(EXACT):
            return self._overflows(ds, files)

    def _overflows(self, ds: Dataset, files) -> bool:
        for name, values in ds.files:
            if name not in files:
                continue
            xs = values[self.column]
            ys = values[self.other[1]] if self.other and self.other[0] == "col" else None
            for i, x in enumerate(xs):
                if x is None:
                    continue
                if ys is not None:
                    y = ys[i]
                    if y is None:
                        continue
                elif self.other:
                    y = self.other[1]
                r = self.apply(x, y if self.other else None)
                if r < self.lo or r > self.hi:
                    return True
        return False

    def apply(self, x, y):
        if self.op == "+":
            return x + y
        if self.op == "-":
            return x - y
        if self.op == "*":
            return x * y
        if self.op == "/":
            q = abs(x) // abs(y)
            return q if (x < 0) == (y < 0) else -q
        if self.op == "neg":
            return -x
        return abs(x)


RISKY_COLS = ["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "d38"]


def risky(rng, ds: Dataset) -> tuple[Expr, Risky]:
    col = BY_NAME[rng.choice(RISKY_COLS)]
    c = colref(col)
    tdf, tdk = type_names(col)
    if col.kind == "decimal":
        top = D(10**38 - 1).scaleb(-10, EXACT)
        op = rng.choice(["+", "-"])
        other = ("col", col.name) if rng.random() < 0.6 else ("lit", value(rng, ds, col))
        rhs = c if other[0] == "col" else lit(rng, col, other[1])
        expr = join("({} " + op + " {})", [c, rhs], ["overflow", "decimal-overflow"])
        spec = Risky(op, col.name, other, top.copy_negate(), top)
        bound = lit(rng, col, D(0) if rng.random() < 0.5 else value(rng, ds, col))
    else:
        ops = ["+", "-", "*", "*"] + (["neg", "abs", "/"] if col.kind == "int" else [])
        op = rng.choice(ops)
        if op in ("neg", "abs"):
            expr = c.wrap("(-{})" if op == "neg" else "abs({})", ["overflow", "int-overflow"])
            other = None
        elif op == "/":
            other = ("lit", -1)
            expr = Expr(f"({col.name} / CAST(-1 AS {tdf}))", f"({col.name} // CAST(-1 AS {tdk}))",
                        c.tags | {"overflow", "int-overflow"})
        else:
            if rng.random() < 0.35:
                other = ("col", col.name)
                rhs = c
            else:
                v = rng.choice([1, 2, -1, 100, col.hi, col.lo] if col.kind == "int" else [1, 2, 100, col.hi])
                other = ("lit", v)
                rhs = lit(rng, col, v)
            expr = join("({} " + op + " {})", [c, rhs], ["overflow", "int-overflow"])
        spec = Risky(op, col.name, other, col.lo, col.hi)
        bound = lit(rng, col, rng.choice([0, 1, col.hi, col.lo]))
    shape = rng.random()
    if shape < 0.6:
        pred = join("{} " + rng.choice(CMP) + " {}", [expr, bound])
    elif shape < 0.75:
        pred = expr.wrap("{} IS NULL")
    elif shape < 0.9:
        pred = join("{} IN ({}, {})", [expr, bound, lit(rng, col, value(rng, ds, col))], ["in-list"])
    else:
        # Bounds in order: DuckDB answers an empty BETWEEN (low above high)
        # without evaluating its operand.
        a, b = rng.choice([0, 1, col.hi, col.lo]), value(rng, ds, col)
        a, b = min(a, b), max(a, b)
        pred = join("{} BETWEEN {} AND {}", [expr, lit(rng, col, a), lit(rng, col, b)], ["between"])
    if rng.random() < 0.2:
        pred = pred.wrap("NOT ({})", ["not"])
    return pred, spec


# --- cases -------------------------------------------------------------------


@dataclass
class Case:
    no: int
    path: str  # a file's key or the table's prefix
    files: list  # the file names it reads
    columns: list | None  # None: every column
    filter: Expr
    limit: int | None
    risky: Risky | None = None


def make_cases(ds: Dataset, seed: int, count: int) -> list:
    rng = random.Random(f"cases-{seed}")
    names = [f for f, _ in ds.files]
    cases = []
    for no in range(count):
        # Every tenth case reads the whole table, so that Flight SQL (which
        # sees the table, not one file) can be asked it too.
        whole = rng.random() < 0.35
        if no % 10 == 0 or whole:
            path, files = PREFIX, names
        else:
            f = rng.choice(names)
            path, files = PREFIX + f, [f]
        spec = None
        if rng.random() < 0.08:
            filt, spec = risky(rng, ds)
        else:
            filt = predicate(rng, ds)
        if rng.random() < 0.1:
            columns = None
        else:
            columns = rng.sample([c.name for c in COLS], rng.randint(1, 6))
        limit = None
        if spec is None and rng.random() < 0.2:
            limit = rng.choice([0, 1, 3, 10, 100, 1000, 10000])
        cases.append(Case(no, path, files, columns, filt, limit, spec))
    return cases


# --- normalising answers --------------------------------------------------------

NAN = ("<NaN>",)


def norm_column(col: pa.ChunkedArray) -> list:
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if pa.types.is_timestamp(t):
        return pc.cast(pc.cast(col, pa.timestamp("us", t.tz)), pa.int64()).to_pylist()
    vals = col.to_pylist()
    if pa.types.is_floating(t):
        return [NAN if isinstance(v, float) and math.isnan(v) else (0.0 if v == 0 else v) for v in vals]
    return vals


def rows_of(table: pa.Table) -> collections.Counter:
    cols = [norm_column(c) for c in table.columns]
    return collections.Counter(zip(*cols)) if cols else collections.Counter()


def short(rows: collections.Counter, n: int = 3) -> str:
    items = list(rows.elements())[:n]
    more = sum(rows.values()) - len(items)
    return ", ".join(repr(r) for r in items) + (f" (+{more} more)" if more > 0 else "")


# --- answering a case --------------------------------------------------------------


@dataclass
class Answer:
    table: pa.Table | None = None
    code: str = ""  # gRPC code name on error
    message: str = ""


def flight_answer(client: fl.FlightClient, case: Case) -> Answer:
    request = {"source": "local", "path": case.path, "filter": case.filter.df}
    if case.columns is not None:
        request["columns"] = case.columns
    if case.limit is not None:
        request["limit"] = case.limit
    options = fl.FlightCallOptions(timeout=120)
    try:
        info = client.get_flight_info(fl.FlightDescriptor.for_command(json.dumps(request)), options)
        parts, got = [], 0
        for ep in info.endpoints:
            if case.limit is not None and got >= case.limit:
                break
            part = client.do_get(ep.ticket, options).read_all()
            parts.append(part)
            got += part.num_rows
        table = pa.concat_tables(parts) if parts else info.schema.empty_table()
        if case.limit is not None:
            table = table.slice(0, case.limit)
        return Answer(table)
    except pa.ArrowInvalid as e:
        return Answer(code="INVALID_ARGUMENT", message=str(e))
    except (fl.FlightError, pa.ArrowException) as e:
        return Answer(code=type(e).__name__, message=str(e))


def sql_answer(conn, case: Case) -> Answer:
    cols = "*" if case.columns is None else ", ".join(f'"{c}"' for c in case.columns)
    text = f"SELECT {cols} FROM local.{SCHEMA}.{TABLE} WHERE {case.filter.df}"
    if case.limit is not None:
        text += f" LIMIT {case.limit}"
    try:
        with conn.cursor() as cur:
            cur.execute(text)
            return Answer(cur.fetch_arrow_table())
    except adbc_driver_manager.Error as e:
        code = getattr(e, "status_code", None)
        return Answer(code=code.name if code is not None else type(e).__name__, message=str(e))


def asks_sql(case: Case) -> bool:
    return case.no % SQL_EVERY == 0 and case.path == PREFIX


def duck_query(case: Case, view: str) -> str:
    cols = "*" if case.columns is None else ", ".join(f'"{c}"' for c in case.columns)
    return f"SELECT {cols} FROM {view} WHERE {case.filter.dk}"


def view_of(case: Case) -> str:
    return "t_all" if case.path == PREFIX else "t_" + case.files[0].split(".")[0].replace("-", "_")


@dataclass
class Expected:
    rows: collections.Counter | None = None
    overflow: bool = False
    oracle_problem: str = ""  # the test is wrong: DuckDB refused or disagreed


def expected_answer(duck, ds: Dataset, case: Case) -> Expected:
    query = duck_query(case, view_of(case))
    try:
        rows, error = rows_of(duck.sql(query).to_arrow_table()), ""
    except duckdb.Error as e:
        rows, error = None, f"{type(e).__name__}: {str(e)[:300]}"
    if case.risky is not None:
        overflow = case.risky.overflows(ds, case.files)
        if overflow != (rows is None and "overflow" in error.lower()):
            return Expected(oracle_problem=f"Python says overflow={overflow}, DuckDB says {error or 'no error'}")
        if overflow:
            return Expected(overflow=True)
    if rows is None:
        return Expected(oracle_problem=f"DuckDB refused the case: {error}")
    return Expected(rows)


@dataclass
class Mismatch:
    case: Case
    where: str  # cold warm sql oracle
    kind: str
    detail: str

    def text(self) -> str:
        c = self.case
        return (f"[{self.where}] {self.kind}: seed={SEED} case={c.no} path={c.path} limit={c.limit}\n"
                f"    columns={c.columns}\n"
                f"    filter (node)  : {c.filter.df}\n"
                f"    filter (duckdb): {c.filter.dk}\n"
                f"    {' '.join(self.detail.split())}")

    def record(self) -> dict:
        c = self.case
        return {"seed": SEED, "case": c.no, "where": self.where, "kind": self.kind, "path": c.path,
                "columns": c.columns, "limit": c.limit, "filter": c.filter.df, "duckdb_filter": c.filter.dk,
                "tags": sorted(c.filter.tags), "detail": self.detail}


def judge(case: Case, want: Expected, got: Answer, where: str) -> Mismatch | None:
    if want.overflow:
        if got.table is not None:
            return Mismatch(case, where, "overflow answered instead of failing",
                            f"an integer/decimal overflow must fail with InvalidArgument; the node returned "
                            f"{got.table.num_rows} rows: {short(rows_of(got.table))}")
        if got.code != "INVALID_ARGUMENT" or "overflow" not in got.message.lower():
            return Mismatch(case, where, "overflow failed with the wrong error",
                            f"want INVALID_ARGUMENT mentioning overflow, got {got.code}: {got.message[:300]}")
        return None
    if got.table is None:
        return Mismatch(case, where, f"node error {got.code}", f"DuckDB answered {sum(want.rows.values())} "
                        f"rows; the node failed: {got.message[:400]}")
    names = got.table.schema.names
    wanted_names = case.columns if case.columns is not None else [c.name for c in COLS]
    if names != wanted_names:
        return Mismatch(case, where, "columns differ", f"want columns {wanted_names}, got {names}")
    rows = rows_of(got.table)
    n_want = sum(want.rows.values())
    if case.limit is not None:
        count = sum(rows.values())
        extra = rows - want.rows
        if count != min(case.limit, n_want) or extra:
            return Mismatch(case, where, "rows differ (with limit)",
                            f"want min({case.limit}, {n_want}) rows, got {count}; rows not in DuckDB's answer: "
                            f"{short(extra) or 'none'}")
        return None
    if rows != want.rows:
        missing, extra = want.rows - rows, rows - want.rows
        return Mismatch(case, where, "rows differ",
                        f"DuckDB {n_want} rows, node {sum(rows.values())}; missing {sum(missing.values())}: "
                        f"{short(missing) or '-'}; extra {sum(extra.values())}: {short(extra) or '-'}")
    return None


# --- the test ---------------------------------------------------------------------


def stats(client) -> dict:
    return json.loads(next(client.do_action(fl.Action("stats", b""))).body.to_pybytes())


def start_node(root: Path, lake: Path, *extra) -> Server:
    shutil.copytree(lake, root / "data" / SCHEMA / TABLE)
    return Server(root, *extra)


def warm_up(node: Server, files) -> dict:
    """Reads every file whole until the hot tier answers all of them: a column
    chunk is admitted on its second miss and filled in the background."""
    client = fl.connect(f"grpc://127.0.0.1:{node.port}")
    everything = [Case(-1, PREFIX + f, [f], None, both("TRUE"), None) for f in files]
    deadline = time.time() + 120
    while time.time() < deadline:
        before = stats(client)["hot"]
        for case in everything:
            answer = flight_answer(client, case)
            assert answer.table is not None, f"warming {case.path} failed: {answer.code} {answer.message}"
        after = stats(client)["hot"]
        if after["misses"] == before["misses"] and after["hits"] - before["hits"] == len(files):
            return after
        time.sleep(0.2)
    raise AssertionError(f"the hot tier never answered every file: {stats(client)['hot']}")


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle")
    ds = generate(SEED, root / "lake")
    return root, ds


def test_node_against_duckdb(lake):
    root, ds = lake
    started = time.time()
    names = [f for f, _ in ds.files]

    # DuckDB loads the files into its own tables; its answers are checked
    # against the values written, so the oracle's own reading is verified.
    # Its expression rewriter is off: the rule that moves constants across a
    # comparison turns `i64 + 1 > 0` into `i64 > -1` (no overflow error where
    # the documented semantics want one) and `-f64 <= NaN` into a comparison
    # that is false for every row (under DuckDB's own total order it is true
    # for every non-NULL row; the rewrite is a DuckDB bug). Without it DuckDB
    # evaluates the filter as written.
    duck = duckdb.connect()
    for setting in ("TimeZone = 'UTC'", "threads = 1", "disabled_optimizers = 'expression_rewriter'"):
        duck.execute(f"SET {setting}")
    for f in names:
        view = "t_" + f.split(".")[0].replace("-", "_")
        duck.execute(f"CREATE TABLE {view} AS SELECT * FROM read_parquet('{root / 'lake' / f}')")
    duck.execute("CREATE VIEW t_all AS " + " UNION ALL ".join(
        f"SELECT * FROM t_{f.split('.')[0].replace('-', '_')}" for f in names))
    for (f, _), table in zip(ds.files, ds.tables):
        view = "t_" + f.split(".")[0].replace("-", "_")
        assert rows_of(duck.sql(f"SELECT * FROM {view}").to_arrow_table()) == rows_of(table), \
            f"DuckDB does not read back {f} as written"

    cases = make_cases(ds, SEED, CASES)
    cold = start_node(root / "cold", root / "lake", "--cache-hot", "0")
    warm = None
    try:
        warm = start_node(root / "warm", root / "lake")
        warm_up(warm, names)
        warm_stats = fl.connect(f"grpc://127.0.0.1:{warm.port}")
        hot_before = stats(warm_stats)["hot"]
        prepared = time.time()

        local = threading.local()

        def clients():
            if not hasattr(local, "cold"):
                local.cold = fl.connect(f"grpc://127.0.0.1:{cold.port}")
                local.warm = fl.connect(f"grpc://127.0.0.1:{warm.port}")
                local.duck = duck.cursor()
                local.duck.execute("SET TimeZone = 'UTC'")
                local.sql = flight_sql.connect(f"grpc://127.0.0.1:{cold.port}", autocommit=True)
                opened.append(local.sql)
            return local

        opened = []
        counts = collections.Counter()
        lock = threading.Lock()

        def run(case: Case) -> list:
            c = clients()
            want = expected_answer(c.duck, ds, case)
            if want.oracle_problem:
                return [Mismatch(case, "oracle", "the test is wrong", want.oracle_problem)]
            with lock:
                counts["overflow" if want.overflow else "rows"] += 1
            found = []
            for where, answer in (("cold", lambda: flight_answer(c.cold, case)),
                                  ("warm", lambda: flight_answer(c.warm, case)),
                                  ("sql", lambda: sql_answer(c.sql, case) if asks_sql(case) else None)):
                got = answer()
                if got is None:
                    continue
                with lock:
                    counts[where] += 1
                m = judge(case, want, got, where)
                if m is not None:
                    found.append(m)
            return found

        with ThreadPoolExecutor(WORKERS) as pool:
            mismatches = [m for found in pool.map(run, cases) for m in found]
        for conn in opened:
            conn.close()
        hot_after = stats(warm_stats)["hot"]
    finally:
        exits = {name: node.stop() for name, node in (("cold", cold), ("warm", warm)) if node is not None}

    elapsed = time.time() - started
    hot_hits = hot_after["hits"] - hot_before["hits"]
    hot_misses = hot_after["misses"] - hot_before["misses"]
    summary = (f"oracle: seed={SEED} cases={len(cases)} (answers: {counts['rows']} rows, {counts['overflow']} "
               f"overflow errors) cold={counts['cold']} warm={counts['warm']} sql={counts['sql']}; warm node hot "
               f"tier: {hot_hits} hits, {hot_misses} misses; {elapsed:.0f} s ({prepared - started:.0f} s to "
               f"prepare); {len(mismatches)} mismatches")
    print(summary)

    # Both nodes served to the end, and the warm pass really was served by
    # the hot tier.
    for name, node in (("cold", cold), ("warm", warm)):
        assert exits[name] == 0, f"the {name} node exited with {exits[name]}: {node.logs()[-3000:]}"
    assert hot_hits > 0, f"the warm node's hot tier answered nothing: {summary}"

    if mismatches:
        report = root / "mismatches.jsonl"
        with open(report, "w") as out:
            for m in mismatches:
                out.write(json.dumps(m.record(), default=str) + "\n")
        classes = collections.Counter((m.where, m.kind) for m in mismatches)
        tags = collections.Counter(t for m in mismatches for t in m.case.filter.tags)
        lines = [summary, f"every mismatch as JSON lines: {report}", "classes:"]
        lines += [f"  {n:5d}  [{where}] {kind}" for (where, kind), n in sorted(classes.items())]
        lines += ["filter features among mismatching cases: "
                  + ", ".join(f"{t} {n}" for t, n in tags.most_common())]
        limit = int(os.environ.get("QUIVER_ORACLE_SHOW", "400"))
        lines += [m.text() for m in sorted(mismatches, key=lambda m: (m.where, m.kind, m.case.no))[:limit]]
        if len(mismatches) > limit:
            lines.append(f"... {len(mismatches) - limit} more in {report}")
        pytest.fail("\n".join(lines), pytrace=False)
