"""The language list and the weighted language draw.

The list is XLM-R's CC-100 set (Conneau et al., 2020), the one the E5-Mistral paper samples from
(arXiv 2401.00368, section 3.1), with its script / romanisation variants kept as separate entries.
Weights follow the paper's reported mix: English 0.431, the 13 next most frequent languages 0.029
each, and the remaining languages share what is left equally (about 0.0022 each).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from e5rag.retriever.errors import InputError

# (code, name as written in prompts). Codes are CC-100's, with "_" instead of "-".
LANGUAGES: tuple[tuple[str, str], ...] = (
    ("af", "Afrikaans"), ("am", "Amharic"), ("ar", "Arabic"), ("as", "Assamese"),
    ("az", "Azerbaijani"), ("be", "Belarusian"), ("bg", "Bulgarian"), ("bn", "Bengali"),
    ("bn_rom", "Bengali (written in Latin script)"), ("br", "Breton"), ("bs", "Bosnian"),
    ("ca", "Catalan"), ("cs", "Czech"), ("cy", "Welsh"), ("da", "Danish"), ("de", "German"),
    ("el", "Greek"), ("en", "English"), ("eo", "Esperanto"), ("es", "Spanish"), ("et", "Estonian"),
    ("eu", "Basque"), ("fa", "Persian"), ("fi", "Finnish"), ("fr", "French"),
    ("fy", "Western Frisian"), ("ga", "Irish"), ("gd", "Scottish Gaelic"), ("gl", "Galician"),
    ("gu", "Gujarati"), ("ha", "Hausa"), ("he", "Hebrew"), ("hi", "Hindi"),
    ("hi_rom", "Hindi (written in Latin script)"), ("hr", "Croatian"), ("hu", "Hungarian"),
    ("hy", "Armenian"), ("id", "Indonesian"), ("is", "Icelandic"), ("it", "Italian"),
    ("ja", "Japanese"), ("jv", "Javanese"), ("ka", "Georgian"), ("kk", "Kazakh"), ("km", "Khmer"),
    ("kn", "Kannada"), ("ko", "Korean"), ("ku", "Kurdish (Kurmanji)"), ("ky", "Kyrgyz"),
    ("la", "Latin"), ("lo", "Lao"), ("lt", "Lithuanian"), ("lv", "Latvian"), ("mg", "Malagasy"),
    ("mk", "Macedonian"), ("ml", "Malayalam"), ("mn", "Mongolian"), ("mr", "Marathi"),
    ("ms", "Malay"), ("my", "Burmese"), ("my_zaw", "Burmese (Zawgyi encoding)"), ("ne", "Nepali"),
    ("nl", "Dutch"), ("no", "Norwegian"), ("om", "Oromo"), ("or", "Odia"), ("pa", "Punjabi"),
    ("pl", "Polish"), ("ps", "Pashto"), ("pt", "Portuguese"), ("ro", "Romanian"), ("ru", "Russian"),
    ("sa", "Sanskrit"), ("sd", "Sindhi"), ("si", "Sinhala"), ("sk", "Slovak"), ("sl", "Slovenian"),
    ("so", "Somali"), ("sq", "Albanian"), ("sr", "Serbian"), ("su", "Sundanese"), ("sv", "Swedish"),
    ("sw", "Swahili"), ("ta", "Tamil"), ("ta_rom", "Tamil (written in Latin script)"),
    ("te", "Telugu"), ("te_rom", "Telugu (written in Latin script)"), ("th", "Thai"),
    ("tl", "Filipino"), ("tr", "Turkish"), ("ug", "Uyghur"), ("uk", "Ukrainian"), ("ur", "Urdu"),
    ("ur_rom", "Urdu (written in Latin script)"), ("uz", "Uzbek"), ("vi", "Vietnamese"),
    ("xh", "Xhosa"), ("yi", "Yiddish"), ("zh", "Chinese (Simplified)"),
    ("zh_Hant", "Chinese (Traditional)"),
)
LANGUAGE_NAMES: dict[str, str] = dict(LANGUAGES)

ENGLISH_WEIGHT = 0.431
MAJOR_WEIGHT = 0.029
# The 13 languages after English in the paper's language statistics (its Figure on data stats).
MAJOR_LANGUAGES: tuple[str, ...] = (
    "pl", "ja", "it", "ru", "id", "de", "fa", "es", "zh", "fr", "pt", "nl", "ar",
)
LANGUAGE_MODES = ("weighted", "uniform")


def paper_weights() -> dict[str, float]:
    """code -> probability, the paper's mix (sums to 1)."""
    others = [c for c, _ in LANGUAGES if c != "en" and c not in MAJOR_LANGUAGES]
    rest = (1.0 - ENGLISH_WEIGHT - MAJOR_WEIGHT * len(MAJOR_LANGUAGES)) / len(others)
    weights = {c: rest for c in others}
    weights.update({c: MAJOR_WEIGHT for c in MAJOR_LANGUAGES})
    weights["en"] = ENGLISH_WEIGHT
    return {c: weights[c] for c, _ in LANGUAGES}


def resolve_language(text: str) -> str:
    """A language code from a code or an English name, case-insensitive ("de", "German", "zh-Hant")."""
    key = text.strip().lower().replace("-", "_")
    for code, name in LANGUAGES:
        if key == code.lower() or key == name.lower() or key == name.split(" (")[0].lower():
            return code
    raise InputError(f"unknown language {text!r}: use a code or English name from synth.languages.LANGUAGES "
                     f"(e.g. en, de, zh, zh_Hant, sw)")


def language_weights(spec: str | Sequence[str]) -> dict[str, float]:
    """code -> probability for ``spec``: "weighted" (the paper's mix), "uniform", or a list of languages
    (drawn uniformly)."""
    if isinstance(spec, str):
        if spec == "weighted":
            return paper_weights()
        if spec == "uniform":
            return {c: 1.0 / len(LANGUAGES) for c, _ in LANGUAGES}
        spec = (spec,)
    codes = list(dict.fromkeys(resolve_language(s) for s in spec))
    if not codes:
        raise InputError("languages: give 'weighted', 'uniform' or at least one language code")
    return {c: 1.0 / len(codes) for c in codes}


def sample_language(rng: random.Random, weights: dict[str, float], exclude: str | None = None) -> str:
    """One language code drawn from ``weights`` (``exclude`` is never returned)."""
    codes = [c for c in weights if c != exclude]
    if not codes:  # a single-language spec asking for a *different* language: fall back to the paper's mix
        return sample_language(rng, paper_weights(), exclude)
    return rng.choices(codes, weights=[weights[c] for c in codes], k=1)[0]
