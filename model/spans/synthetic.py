"""Templated documents with entity spans: a known task for tests, replays and calibration checks.

Sentences are drawn from templates with entity slots (persons, places, organisations, dates) and
joined into documents of 20-60 tokens; the spans' offsets are recorded while the text is built, so
they are exact by construction. Half of each name pool is drawn only when ``unseen=True``, so a test
set can hold names no training document has (the tagger must generalise from shape and context, not
memorise words).

``ambiguity``: the share of sentences that name an entity in a context that says nothing about its
type ("Everyone was talking about X again."), where X is a name that is a person, a place or a
company alike (Jordan, Morgan, Florence...: a pool of its own, used nowhere else) labelled at random:
a person with probability 0.6, a place 0.3, a company 0.1 (:data:`AMBIGUOUS_LABELS`). No model can
be sure there, which is what a calibration check needs: the best answer is "person", right 60 % of
the time, so a calibrated tagger scores such spans about 0.6. (The split is uneven on purpose: with
three equally likely labels the label a model sees most often in its few training examples is right
less often than it was there, and even an exact posterior looks overconfident.)

Languages: English (``en``), Japanese (``ja``) and Chinese (``zh``), the last two written without
spaces, for the tokenizer's per-script rules.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

LABELS = ("PER", "LOC", "ORG", "DATE")
#: The labels of an ambiguous name and their probabilities (see the module docstring).
AMBIGUOUS_LABELS = {"PER": 0.6, "LOC": 0.3, "ORG": 0.1}

_EN = {
    "PER": ["Alice Johnson", "Bob Smith", "Carla Gomez", "David Lee", "Emma Brown", "Farid Khan",
            "Grace Kim", "Hiro Tanaka", "Ivan Petrov", "Julia Rossi", "Kofi Mensah",
            "Laura Martin", "Marek Novak", "Nina Patel", "Omar Haddad", "Priya Singh",
            "Quentin Dubois", "Rosa Silva", "Sven Larsen", "Tara Murphy"],
    "LOC": ["Paris", "Berlin", "New York", "Lagos", "Osaka", "San Francisco", "Lima", "Oslo",
            "Cairo", "Toronto", "Madrid", "Nairobi", "Hanoi", "Buenos Aires", "Dublin", "Seoul",
            "Prague", "Sydney", "Quito", "Vienna"],
    "ORG": ["Acme Corp", "Globex", "Initech Labs", "Umbrella Group", "Stark Industries",
            "Wayne Enterprises", "Hooli", "Vandelay Imports", "Soylent Foods", "Tyrell Systems",
            "Cyberdyne", "Oscorp", "Wonka Works", "Nakatomi Trading", "Gringotts Bank",
            "Monarch Airlines", "Dunder Mifflin", "Pied Piper", "Aperture", "Blue Sun"],
    "DATE": ["March 3", "last Monday", "2021", "June 14, 2019", "yesterday", "May 2020",
             "October 1", "last year", "January 9, 2022", "this spring", "August 30", "2018",
             "next week", "July 4, 2016", "December 12", "April 2023", "last winter",
             "September 21", "2015", "February 28"],
}
_EN_AMBIGUOUS = ["Jordan", "Morgan", "Madison", "Chelsea", "Florence", "Victoria", "Georgia", "Austin", "Phoenix",
                 "Savannah", "Lincoln", "Dallas", "Denver", "Regina", "Tyler", "Orlando"]
_EN_TEMPLATES = [
    "{PER} visited {LOC} on {DATE}.", "{PER} works for {ORG} in {LOC}.", "{ORG} opened a new office in {LOC}.",
    "On {DATE}, {PER} met {PER} at the {ORG} headquarters.", "The weather in {LOC} was mild {DATE}.",
    "{PER} said the results were encouraging.", "Shares of {ORG} rose after the announcement on {DATE}.",
    "Nobody expected the meeting to end so early.", "{PER} and {PER} flew from {LOC} to {LOC}.",
    "According to {PER}, {ORG} will hire more engineers.", "The report was published {DATE} by {ORG}.",
    "Prices went up again, and the committee did not comment.", "Mr. {PER} moved to {LOC} with his family.",
    "{ORG} and {ORG} signed an agreement in {LOC}.", "Ms. {PER} joined {ORG} in {DATE}.",
]
_EN_NEUTRAL = ["Everyone was talking about {AMB} again.", "We heard a lot about {AMB} today.",
               "The letter mentioned {AMB} twice."]

_JA = {
    "PER": ["田中太郎", "佐藤花子", "鈴木一郎", "高橋美咲", "伊藤健", "渡辺直美", "山本大輔",
            "中村愛", "小林誠", "加藤恵", "ジョン・スミス", "マリア", "吉田翔", "山田優子",
            "松本潤", "井上陽子"],
    "LOC": ["東京", "大阪", "京都", "北海道", "福岡", "名古屋", "横浜", "神戸", "ニューヨーク",
            "パリ", "沖縄", "仙台", "広島", "ロンドン", "札幌", "奈良"],
    "ORG": ["トヨタ", "ソニー", "日本銀行", "任天堂", "パナソニック", "日立製作所", "楽天",
            "東京大学", "ホンダ", "富士通", "キヤノン", "三菱商事", "ヤマハ", "シャープ",
            "日本航空", "セブン銀行"],
    "DATE": ["三月三日", "2021年", "昨日", "先週", "去年", "五月", "2019年4月", "今朝", "来月",
             "十月十日", "2018年", "先月", "今年", "2022年1月", "明日", "八月"],
}
_JA_AMBIGUOUS = ["さくら", "ひかり", "あおい", "みどり", "つばさ", "はるか", "あさひ", "のぞみ"]
_JA_TEMPLATES = [
    "{PER}さんは{DATE}に{LOC}へ行きました。", "{ORG}は{LOC}に新しい工場を建てた。", "{DATE}、{PER}が{ORG}に入社した。",
    "{LOC}の天気は晴れでした。", "{PER}と{PER}は{LOC}で会った。", "会議は予定より早く終わった。",
    "{ORG}の株価が{DATE}に上がった。", "{PER}によると、{ORG}は技術者を増やす。",
]

_ZH = {
    "PER": ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄勇", "周杰", "吴霞", "徐强",
            "孙丽", "马超", "朱琳", "胡军", "郭涛"],
    "LOC": ["北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "南京", "西安", "重庆", "天津",
            "苏州", "长沙", "青岛", "厦门", "昆明"],
    "ORG": ["华为", "阿里巴巴", "腾讯", "中国银行", "百度", "小米", "京东", "清华大学", "联想",
            "海尔", "比亚迪", "网易", "中国移动", "美团", "格力", "北京大学"],
    "DATE": ["2021年3月", "去年", "昨天", "上周", "今年", "五月", "2019年", "明天", "下个月",
             "十月一日", "2018年", "上个月", "今天", "2022年1月", "前年", "八月"],
}
_ZH_AMBIGUOUS = ["长城", "光明", "长江", "黄山", "太平", "东方", "华夏", "中华"]
_ZH_TEMPLATES = [
    "{PER}在{LOC}工作。", "{ORG}宣布在{LOC}建立新工厂。", "{DATE}，{PER}访问了{ORG}。", "{LOC}的天气很好。",
    "{PER}和{PER}从{LOC}飞往{LOC}。", "会议提前结束了。", "{ORG}的股价在{DATE}上涨。",
    "据{PER}说，{ORG}将招聘更多工程师。",
]

_LANGUAGES: dict[str, tuple[dict[str, list[str]], list[str], list[str], str]] = {
    "en": ({**_EN, "AMB": _EN_AMBIGUOUS}, _EN_TEMPLATES, _EN_NEUTRAL, " "),
    "ja": ({**_JA, "AMB": _JA_AMBIGUOUS}, _JA_TEMPLATES, ["みんなが{AMB}の話をしていた。"], ""),
    "zh": ({**_ZH, "AMB": _ZH_AMBIGUOUS}, _ZH_TEMPLATES, ["大家又在谈论{AMB}。"], ""),
}
_SLOT = re.compile(r"\{(PER|LOC|ORG|DATE|AMB)\}")


def make_documents(n: int, seed: int = 0, language: str = "en", sentences: tuple[int, int] = (2, 4),
                   ambiguity: float = 0.0, unseen: bool = False) -> tuple[list[str], list[list[dict[str, Any]]]]:
    """``n`` documents and their spans (``{"start", "end", "label"}``, exact offsets).

    ``unseen``: draw names from the second half of each pool (kept out otherwise), so a test set can
    hold only names the training documents never had. ``ambiguity``: see the module docstring.
    """
    if language not in _LANGUAGES:
        raise ValueError(f"language must be one of {sorted(_LANGUAGES)}, got {language!r}")
    pools, templates, neutral, joiner = _LANGUAGES[language]
    half = {label: names[len(names) // 2:] if unseen else names[:len(names) // 2] for label, names in pools.items()}
    rng = np.random.default_rng([seed, 7])
    texts, targets = [], []
    for _ in range(n):
        text, spans = "", []
        for s in range(int(rng.integers(sentences[0], sentences[1] + 1))):
            if s:
                text += joiner
            use_neutral = ambiguity > 0 and rng.random() < ambiguity
            template = neutral[rng.integers(len(neutral))] if use_neutral else templates[rng.integers(len(templates))]
            text = _fill(template, text, spans, half, rng)
        texts.append(text)
        targets.append(spans)
    return texts, targets


def _fill(template: str, text: str, spans: list[dict[str, Any]], pools: dict[str, list[str]],
          rng: np.random.Generator) -> str:
    """Append ``template`` to ``text`` with its slots filled, recording a span per slot."""
    pos = 0
    for match in _SLOT.finditer(template):
        text += template[pos:match.start()]
        label = match.group(1)
        names = pools[label]
        if label == "AMB":  # neither the context nor the name says which label
            label = str(rng.choice(list(AMBIGUOUS_LABELS), p=list(AMBIGUOUS_LABELS.values())))
        name = names[int(rng.integers(len(names)))]
        spans.append({"start": len(text), "end": len(text) + len(name), "label": label})
        text += name
        pos = match.end()
    return text + template[pos:]
