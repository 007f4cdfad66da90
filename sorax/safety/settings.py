"""Safety settings of every generation path: content policy, watermark, C2PA provenance.

Variants (`arg`):
  default  everything on (what `sorax sample`, `eval` and `demo` use)
  strict   also refuses prompts that name real people's likeness (deepfake wording) and
           writes the prompt itself into the C2PA manifest for audit
  off      policy, watermark and signing off: research runs only; every command says so

Run:
  sorax sample --checkpoint runs/x --prompt "..." --out out/ --safety experiments/safety.py:strict
  sorax sample ... --safety.provenance.cert=my_chain.pem --safety.provenance.key=my.key
  sorax detect out/0.mp4

A term is a word or phrase matched on word boundaries after the prompt is normalized (look-alike
letters, leetspeak, spacing and stretching undone: sorax/safety/policy.py); "*" at its end
matches any ending; "a & b" needs both parts somewhere in the prompt. These lists are a
starting point for a deployment, not a complete policy: a deployment adds its own terms (slurs,
names of people who have not consented) through its own copy of this file.
"""

import ml_collections

VARIANTS = ("default", "strict", "off")

_MINORS = ["child*", "kid", "kids", "minor", "minors", "underage*", "teen*", "preteen*",
           "little girl*", "little boy*", "young girl*", "young boy*", "toddler*", "infant*",
           "schoolgirl*", "schoolboy*", "loli*"]
# Sexual words that refuse on sight, and those the semantic layer reviews (see CATEGORIES).
_SEXUAL_REVIEW = ["nude*", "naked", "nudity", "sex", "sexy", "lingerie", "stripper*"]
_SEXUAL_HARD = ["sexual*", "porn*", "erotic*", "nsfw", "genital*", "topless", "hentai",
                "fetish*", "orgasm*", "striptease", "masturbat*", "intercourse", "undress*"]

# `terms` refuse on sight. `review_terms` are the terms that refused benign look-alikes of the
# prompt set's training split (an art class drawing a nude, naked mole rats, a murder mystery
# game, a genocide memorial, a suicide prevention hotline, a deepfake-spotting class): where the
# semantic layer is on it decides those prompts, at policy.semantic.review_threshold (BUILD_NOTES,
# "Review terms"); where it is off, or where the term is written in disguise ("murd3r",
# "s u i c i d e"), they refuse like terms.
CATEGORIES = {
    "sexual_minors": dict(
        description="sexual content involving minors", priority=0,
        terms=[f"{m} & {s}" for m in _MINORS for s in _SEXUAL_REVIEW + _SEXUAL_HARD]
        + ["csam", "child abuse material"]),
    "sexual": dict(description="sexual or explicit content", terms=_SEXUAL_HARD,
                   review_terms=_SEXUAL_REVIEW),
    "graphic_violence": dict(
        description="gore and graphic violence",
        terms=["decapitat*", "behead*", "dismember*", "mutilat*", "disembowel*",
               "bloodbath", "blood bath", "mass shooting", "school shooting", "snuff film*",
               "public execution", "execution video", "lynching", "corpse*", "mangled bod*",
               "severed head*", "severed limb*"],
        review_terms=["gore", "gory", "massacre*", "tortur*", "murder*"]),
    "self_harm": dict(
        description="self-harm and suicide",
        terms=["self harm*", "selfharm*", "kill myself", "killing myself", "cut myself",
               "cutting myself", "slit wrist*", "slitting wrist*", "hang myself",
               "hanging myself"],
        review_terms=["suicid*", "overdos*"]),
    "hate": dict(
        description="hateful or extremist content",
        terms=["heil hitler", "white power", "ethnic cleansing", "kkk", "hate speech",
               "racial slur*", "terrorist propaganda", "isis propaganda"],
        review_terms=["nazi propaganda", "genocide"]),
    "weapons": dict(
        description="weapons and terrorism instructions",
        terms=["pipe bomb*", "make a bomb", "build a bomb", "bomb making", "bombmaking",
               "how to make a bomb", "terrorist attack*", "suicide bomb*", "car bomb*",
               "molotov*", "nerve agent*", "bioweapon*", "chemical weapon*", "ghost gun*",
               "3d printed gun*"]),
    "deception": dict(
        description="deepfakes of real people",
        terms=["face swap*", "faceswap*", "fake news footage", "fake footage of",
               "fake video of"],
        review_terms=["deepfake*", "deep fake*"]),
}


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
  variant = arg or "default"
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r} of experiments/safety.py; choose from "
                     f"{VARIANTS}")
  c = ml_collections.ConfigDict()
  c.variant = variant

  c.policy = ml_collections.ConfigDict(dict(
      enabled=True,
      # caption_policy: the output's caption, read from its pixels, goes through the prompt policy.
      output_checks=["finite_frames", "watermark_readable", "caption_policy"],
      categories={k: dict(v, block=True) for k, v in CATEGORIES.items()},
      # The semantic layer (sorax/safety/semantic.py): a classifier over MiniLM sentence
      # embeddings, for labelled exemplars ("" = the training split of the package's
      # sorax/assets/policy_prompts.jsonl); refuses a category at probability >= threshold.
      # tuned: MiniLM's last 3 layers + head fine-tuned on those exemplars ("" = the package's
      # sorax/assets/policy_minilm_top.safetensors; "off" = the pretrained encoder, head fitted).
      # The default since the prompt set has short generic benign rows ("", "x", "a video": the
      # first build refused "", "x", "video" as sexual at 0.69-0.74; BUILD_NOTES).
      # review_threshold: the score at which a prompt with a review term is refused.
      semantic=dict(enabled=True, threshold=0.3, review_threshold=0.2, exemplars="",
                    split="train", model="", tuned="")))

  # sorax/safety/watermark.py: WatermarkConfig fields. `key` seeds the pattern: a deployment
  # keeps its own private. follow_motion: the mark moves with a camera pan (survives crf 28 on
  # panning footage, loses 0.5x on small textured clips; BUILD_NOTES); `sorax detect` must be
  # given the same setting.
  c.watermark = ml_collections.ConfigDict(dict(
      enabled=True, key=0x5A0A, strength=2.8, threshold=6.0, follow_motion=False))

  # cert/key: a PEM chain and its private key; "" = the local test chain in key_dir, created on
  # first use (`sorax keys create` makes one explicitly). trust_anchors: roots `sorax detect`
  # trusts ("" = key_dir/root.pem when it exists).
  c.provenance = ml_collections.ConfigDict(dict(
      enabled=True, cert="", key="", alg="es256", tsa_url="", key_dir="~/.sorax/keys",
      trust_anchors="", include_prompt=False))

  if variant == "strict":
    c.policy.categories.deception.terms = list(CATEGORIES["deception"]["terms"]) + [
        "real person", "celebrity", "politician", "president", "prime minister"]
    c.provenance.include_prompt = True
  elif variant == "off":
    c.policy.enabled = False
    c.watermark.enabled = False
    c.provenance.enabled = False
  return c
