"""Defense registry: one file per defense in this package, registered here by lazy target."""

from __future__ import annotations

from typing import Any

from harness.core.registry import Registry

# name -> (target, aliases, one-line help). Targets are imported only when the defense is used.
DEFENSES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "none": ("harness.defenses.none:NoDefense", (), "Undefended baseline"),
    "self-reminder": (
        "harness.defenses.self_reminder:SelfReminder",
        ("self_reminder",),
        "Self-Reminder system prompt + reminder around the query (Xie et al., 2023)",
    ),
    "figstep-prompt": (
        "harness.defenses.figstep_prompt:FigStepPrompt",
        ("figstep_prompt", "figstep-system-prompt"),
        "FigStep's OCR-aware safety system prompt (Gong et al., 2025)",
    ),
    "adashield-s": (
        "harness.defenses.adashield_s:AdaShieldStatic",
        ("adashield_s", "adashield-static"),
        "AdaShield static defense prompt: query + prompt + query (Wang et al., ECCV 2024)",
    ),
    "ecso": (
        "harness.defenses.ecso:ECSO",
        ("eyes-closed-safety-on",),
        "ECSO: self-check the answer; if unsafe, caption the image and answer without it (Gou et al., ECCV 2024)",
    ),
    "eta": (
        "harness.defenses.eta:ETA",
        ("evaluate-then-align",),
        "ETA: reward + CLIP gates, then 'As an AI assistant' + sentence-level best-of-N (Ding et al., ICLR 2025); "
        "needs ArmoRM + CLIP downloaded and trust_remote_code=true for ArmoRM "
        "(offline: reward_scorer=self-judge, image_scorer=self-judge)",
    ),
    "mllm-protector": (
        "harness.defenses.mllm_protector:MLLMProtector",
        ("mllm_protector", "protector"),
        "MLLM-Protector: harm detector on the answer, detoxifier or fixed refusal (Pi et al., 2024); "
        "needs its LoRA checkpoints + peft (offline: detector=self-judge, detoxifier=none)",
    ),
    "refusal-direction": (
        "harness.defenses.refusal_direction:RefusalDirection",
        ("refusal_direction", "actadd"),
        "Difference-in-means refusal direction added at one layer (Arditi et al., NeurIPS 2024); needs calibration",
    ),
    "cast": (
        "harness.defenses.cast:ConditionalActivationSteering",
        ("conditional-activation-steering",),
        "CAST: add a refusal vector when a harm condition vector fires (Lee et al., ICLR 2025); needs calibration",
    ),
    "astra": (
        "harness.defenses.astra:Astra",
        (),
        "ASTRA: project a jailbreak direction out of one layer, benign-calibrated (Wang et al., CVPR 2025); needs calibration",
    ),
    "autosteer": (
        "harness.defenses.autosteer:AutoSteer",
        ("auto-steer",),
        "AutoSteer: SAS-chosen prober gates a trained refusal head (Wu et al., EMNLP 2025); needs calibration",
    ),
    "ras": (
        "harness.defenses.ras:RiskAdaptiveSteering",
        ("moras",),
        "RAS/MoRAS: caption, prototype-similarity risk, risk-scaled steering of first tokens (Park et al., 2025); needs calibration",
    ),
}


def register_defenses(registry: Registry[Any]) -> None:
    for name, (target, aliases, help_text) in DEFENSES.items():
        registry.register(name, target, aliases=aliases, help=help_text)
