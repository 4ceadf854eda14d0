"""Training options: every method's defaults and the validated TrainConfig (pydantic, no torch)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

DIFFAUGMENT_OPS = ("translation", "cutout", "color")

DEFAULT_METHOD = "cgan"
# Every method's own defaults, in one place: the request's method (DEFAULT_METHOD when it
# names none) fills these fields wherever the request leaves them out. cgan is SNGAN/BigGAN's
# projection recipe (hinge loss, spectrally normalised critic, Adam (0, 0.9)) with MSGAN's
# mode-seeking term, measured the most varied within classes (docs/training.md). wacgan-gp,
# the default until then: a
# Wasserstein critic with the gradient penalty and an auxiliary classifier. acgan follows
# Odena et al.: one critic step per generator step, Adam (0.5, 0.999), no penalty, BCE.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "wacgan-gp": {
        "adv_loss": None,
        "d_conditioning": None,
        "spectral_norm": False,
        "n_critic": 2,
        "beta1": 0.0,
        "beta2": 0.9,
        "gp_weight": 10.0,
        "aux_weight": 0.2,
        "mode_seeking": 0.0,
        "ada_target": None,
    },
    "acgan": {
        "adv_loss": "bce",
        "d_conditioning": None,
        "spectral_norm": False,
        "n_critic": 1,
        "beta1": 0.5,
        "beta2": 0.999,
        "gp_weight": 0.0,
        "aux_weight": 0.2,
        "mode_seeking": 0.0,
        "ada_target": None,
    },
    "cgan": {
        "adv_loss": "hinge",
        "d_conditioning": "projection",
        "spectral_norm": True,
        "n_critic": 2,
        "beta1": 0.0,
        "beta2": 0.9,
        "gp_weight": 0.0,
        "aux_weight": 0.0,
        # MSGAN's term at 0.5 with ADA (r_t target 0.6): recall 0.70 -> 0.93, spread 0.82 ->
        # 1.11 of real, precision 0.98 -> 0.93, CAS 74.5 -> 77.0 % on one seed, every
        # diversity target met (benchmarks/results/diversity.md, docs/training.md)
        "mode_seeking": 0.5,
        "ada_target": 0.6,
    },
    # VCAGAN (Cho, "Training self-supervised class-conditional GAN with virtual labels"): the
    # paper's settings, R1 at 1, Adam 1e-3 (0, 0.99), one critic step, no DiffAugment (the
    # classifier's assignments and P(C) are read on the images as they are)
    "vcagan": {
        "adv_loss": "bce",
        "d_conditioning": None,
        "spectral_norm": False,
        "n_critic": 1,
        "beta1": 0.0,
        "beta2": 0.99,
        "lr_g": 1e-3,
        "lr_d": 1e-3,
        "gp_weight": 0.0,
        "aux_weight": 0.0,
        "r1_weight": 1.0,
        "mode_seeking": 0.0,
        "ada_target": None,
        # the author's later code (CGPGAN): the classifier penalty on fakes and, filled in
        # by _method_defaults, a balanced warm-up over 30 % of the steps. On sklearn's digits
        # at lambda_creg 5 they raised NMI 0.52 / 0.52 -> 0.80 / 0.73 (seeds 0, 1; 10-12
        # clusters), on Fashion-MNIST 0.59 -> 0.61 (seed 0) (benchmarks/results/unlabelled.md)
        "creg_images": "fake",
        "diffaugment": "",
    },
}
UNSUPERVISED_METHODS = ("vcagan",)  # train on unlabelled datasets; labels are ignored
VIRTUAL_LABEL_OPTIONS = (
    "max_classes",
    "lambda_creg",
    "lambda_cls",
    "prior_decay",
    "prior_warmup",
    "balanced_warmup",
    "creg_images",
    "min_class_probability",
)


BALANCED_WARMUP_SHARE = 0.3  # vcagan's balanced warm-up when left out: this share of steps


def _default(option: str) -> Any:
    """The default method's value of a method-dependent option (what the schema shows)."""
    return METHOD_DEFAULTS[DEFAULT_METHOD][option]


class TrainConfig(BaseModel, extra="forbid"):
    """Options of one GAN training run; defaults train a 28 px, 10-class set in ~15 CPU min.

    The method's own defaults (METHOD_DEFAULTS) fill the method-dependent options a request
    leaves out; the field defaults below are the default method's.
    """

    method: Literal["wacgan-gp", "acgan", "cgan", "vcagan"] = Field(
        DEFAULT_METHOD,
        description="cgan (default): label-conditioned discriminator without classifier (see "
        "d_conditioning), hinge loss and spectral norm by default; wacgan-gp: Wasserstein "
        "critic + gradient penalty + auxiliary classifier; acgan: non-saturating BCE + "
        "auxiliary classifier (Odena et al. 2017); vcagan: no labels needed (any given are "
        "ignored): a generator conditioned on virtual classes that a classifier sharing the "
        "critic's layers discovers while training (Cho), see max_classes and lambda_creg. "
        "Unset options take the method's defaults",
    )
    adv_loss: Literal["bce", "hinge"] | None = Field(
        _default("adv_loss"),
        description="adversarial loss of acgan and cgan (bce: non-saturating, acgan's "
        "default; hinge: max(0, 1 -/+ D), cgan's default); must stay unset for wacgan-gp, "
        "whose critic is Wasserstein",
    )
    d_conditioning: Literal["projection", "concat"] | None = Field(
        _default("d_conditioning"),
        description="how cgan's discriminator sees the label (default projection: score + "
        "<embed(y), features>, Miyato & Koyama 2018; concat: one-hot class maps as extra "
        "input channels); must stay unset for wacgan-gp and acgan, which use a classifier head",
    )
    g_conditioning: Literal["cbn", "embed"] = Field(
        "cbn",
        description="cbn: [z, class embedding] sets every generator batch norm's gain and "
        "bias; embed: [z, class embedding] enters the first layer only, norms are plain",
    )
    steps: int = Field(3000, ge=1, le=200_000, description="generator updates")
    batch_size: int = Field(64, ge=1, le=1024, description="images per critic/generator step")
    seed: int | None = Field(
        None, ge=0, le=2**31 - 1, description="seeds all randomness; None picks one and records it"
    )
    z_dim: int = Field(64, ge=2, le=512, description="latent size")
    lr_g: float = Field(2e-4, gt=0, le=1, description="generator Adam learning rate")
    lr_d: float = Field(2e-4, gt=0, le=1, description="critic Adam learning rate")
    beta1: float = Field(_default("beta1"), ge=0, lt=1, description="Adam beta1 (both networks)")
    beta2: float = Field(_default("beta2"), ge=0, lt=1, description="Adam beta2 (both networks)")
    n_critic: int = Field(
        _default("n_critic"), ge=1, le=10, description="critic steps per generator step"
    )
    gp_weight: float = Field(
        _default("gp_weight"), ge=0, description="gradient penalty weight (0 = off)"
    )
    aux_weight: float = Field(
        _default("aux_weight"),
        ge=0,
        description="auxiliary classifier loss weight (0 for cgan, which has no classifier "
        "head); high values collapse classes",
    )
    aux_twin: bool = Field(
        False,
        description="TAC-GAN (Gong et al. 2019): a twin classifier head on the critic learns "
        "the fakes' classes, and the generator's auxiliary loss becomes CE(class head) - "
        "CE(twin head), which cancels AC-GAN's pull towards easily classified images; the "
        "class head then learns from real images only (wacgan-gp and acgan; needs "
        "aux_weight > 0)",
    )
    aux_fake_truncation: float | None = Field(
        None,
        gt=0,
        description="WAC-GAN-GPT: the critic's class head also learns the classes of fakes "
        "drawn from latents truncated to sign(z) * min(|z|, t), a fresh batch per critic "
        "update (for acgan they replace the untruncated fakes in that term); the exported "
        "classifier.onnx is that head. wacgan-gp and acgan with aux_weight > 0, not with "
        "aux_twin; None = off",
    )
    aux_diffaugment: bool = Field(
        True,
        description="whether the critic's class head learns from DiffAugmented images (true) "
        "or from the images as they are (false: one more critic forward per update; the "
        "adversarial score still sees every image augmented; its effect on classifier.onnx "
        "is measured in docs/training.md). wacgan-gp and acgan with aux_weight > 0 and "
        "DiffAugment on",
    )
    label_smoothing: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="one-sided label smoothing: real images' BCE target is 1 - label_smoothing "
        "(bce losses only)",
    )
    spectral_norm: bool = Field(
        _default("spectral_norm"),
        description="spectral normalisation of every critic conv, linear and embedding layer",
    )
    d_dropout: float = Field(
        0.0, ge=0, lt=0.9, description="dropout probability after every critic conv block"
    )
    r1_weight: float = Field(
        0.0,
        ge=0,
        description="R1 penalty on real images, r1_weight / 2 * E|grad D(x)|^2 (0 = off)",
    )
    weight_clip: float | None = Field(
        None,
        gt=0,
        description="WGAN weight clipping: clamp every critic parameter to [-c, c] after each "
        "critic update (wacgan-gp with gp_weight 0 and no spectral_norm; for comparison with "
        "the gradient penalty); None = off",
    )
    transition_start: int = Field(
        0,
        ge=0,
        description="transitional conditioning (Shahbazi et al. 2022): generator updates "
        "trained unconditionally before the class condition starts blending in",
    )
    transition_end: int = Field(
        0,
        ge=0,
        description="generator update at which the class condition reaches full weight; "
        "the weight ramps linearly from transition_start (0 and 0 = conditional throughout; "
        "at most steps)",
    )
    mode_seeking: float = Field(
        _default("mode_seeking"),
        ge=0,
        description="weight of the mode-seeking term (MSGAN, Mao et al. 2019) that rewards "
        "different images from different latents of one class (0 = off; cgan's default 0.5, "
        "the other methods' 0; needs batch_size >= 2: the batch is taken in same-class pairs)",
    )
    ema_decay: float = Field(
        0.999, ge=0, lt=1, description="EMA of generator weights used for export (0 = off)"
    )
    diffaugment: str = Field(
        "translation,cutout",
        description="comma list of DiffAugment ops applied to real and "
        f"fake images the critic sees, from {', '.join(DIFFAUGMENT_OPS)}; empty = off",
    )
    augment_p: float = Field(
        1.0,
        ge=0,
        le=1,
        description="probability that each image the critic sees is DiffAugmented (1 = "
        "every image; the starting value when ada_target is set)",
    )
    ada_target: float | None = Field(
        _default("ada_target"),
        gt=0,
        lt=1,
        description="adaptive augmentation (ADA, Karras et al. 2020): every 4 critic updates, "
        "augment_p moves up when r_t = E[sign(D(real))] is above this target (the critic "
        "is overconfident on real images) and down when below; 0.6 is the paper's value; "
        "None = augment_p stays fixed (cgan's default 0.6, the other methods' None; none "
        "when diffaugment is empty). bce and hinge losses only: a Wasserstein score's "
        "sign does not mean real or fake",
    )
    ada_kimg: float = Field(
        100.0,
        gt=0,
        description="ADA's speed: thousands of real critic images over which augment_p can "
        "move from 0 to 1 (stylegan2-ada uses 500 for runs ~100x longer than ours)",
    )
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints")
    holdout_fraction: float = Field(
        0.2,
        ge=0,
        le=0.5,
        description="stratified share of each class never shown to the GAN, kept to judge "
        "its samples in the quality report (0 = none: report parts that need it are skipped)",
    )
    select_by: Literal["last", "recall"] = Field(
        "last",
        description="which generator to export: last = the last step's; recall = of the "
        "evaluations every select_every steps and at the end, the one whose untruncated "
        "samples best recall the held-out images (PRDC recall in the features of an "
        "evaluator CNN trained on the train split; later wins ties; needs "
        "holdout_fraction > 0)",
    )
    select_every: int = Field(
        500,
        ge=1,
        description="generator updates between select_by recall evaluations (one more at "
        "the end; none before transition_end, whose generator is not fully conditional)",
    )
    select_evaluator_steps: int = Field(
        500,
        ge=1,
        le=20_000,
        description="training steps of select_by recall's evaluator CNN (batch 64, as the "
        "quality report's evaluator)",
    )
    report: Literal["none", "fast", "standard"] = Field(
        "standard",
        description="quality report after training: standard (minutes on a CPU), fast "
        "(seconds, coarse), none",
    )
    max_classes: int = Field(
        16,
        ge=2,
        le=64,
        description="vcagan: d_c, the number of virtual classes (the most clusters it can "
        "find; the paper's 8 for 2-D points, 16 for MNIST)",
    )
    lambda_creg: float = Field(
        5.0,
        ge=0,
        description="vcagan: weight of the classifier gradient penalty E|grad_x Q(x)_argmax|^2; "
        "larger gives fewer, coarser clusters (the paper: 0.1-10 on 2-D points, 1-10 on MNIST)",
    )
    lambda_cls: float = Field(
        1.0,
        ge=0,
        description="vcagan: weight of the classifier's cross-entropy on fakes, CE(c, Q(G(z, c)))",
    )
    prior_decay: float = Field(
        0.999,
        ge=0,
        lt=1,
        description="vcagan: decay of P(C), the exponential moving average of the classifier's "
        "probabilities on real images, from which fake classes are drawn (the paper's 0.999; "
        "a faster prior lets one class take most images on images, docs/training.md)",
    )
    prior_warmup: int = Field(
        0,
        ge=0,
        description="vcagan: critic steps during which P(C) stays uniform before its moving "
        "average starts (beyond the paper, which starts the average at once; 0 = off)",
    )
    balanced_warmup: int = Field(
        0,
        ge=0,
        description="vcagan: critic steps during which each real image's class is the argmax "
        "of its probabilities minus the batch's mean (spreading each batch over the classes) "
        "and P(C) stays uniform (the author's later CGPGAN code; beyond the paper; 0 = off). "
        "vcagan's default: 30 % of steps, as the author",
    )
    creg_images: Literal["real", "fake"] = Field(
        "real",
        description="vcagan: where the classifier gradient penalty is taken: real (the "
        "paper's E|grad_x Q(x)_argmax|^2 on real images) or fake (the author's later CGPGAN "
        "code: E|grad (1 - softmax(Q(G(z, c)))·c)^2|^2 on fakes; vcagan's default)",
    )
    min_class_probability: float = Field(
        0.01,
        gt=0,
        lt=0.5,
        description="vcagan: virtual classes with P(C) at least this become the model's "
        "classes (cluster_00, cluster_01, ... by decreasing P(C))",
    )
    g_channels: int = Field(32, ge=8, le=512, description="generator width at full resolution")
    d_channels: int = Field(32, ge=8, le=512, description="critic width of its first conv")

    @model_validator(mode="before")
    @classmethod
    def _method_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            method = data.get("method", DEFAULT_METHOD)
            if method in METHOD_DEFAULTS:  # an unknown method is the Literal's to refuse
                defaults = dict(METHOD_DEFAULTS[method])
                if data.get("diffaugment") == "":  # no ops for ADA to adapt: not its default
                    defaults["ada_target"] = None
                if method == "vcagan":
                    steps = data.get("steps", cls.model_fields["steps"].default)
                    if isinstance(steps, int):  # else the field's to refuse
                        defaults["balanced_warmup"] = round(BALANCED_WARMUP_SHARE * steps)
                return {**defaults, **data}
        return data

    @model_validator(mode="after")
    def _consistent_options(self) -> TrainConfig:
        problems = []
        wasserstein = self.method == "wacgan-gp"
        if wasserstein and self.adv_loss is not None:
            problems.append("adv_loss applies to acgan and cgan; wacgan-gp is Wasserstein")
        if not wasserstein and self.adv_loss is None:
            problems.append(f"adv_loss must be bce or hinge for {self.method}")
        if self.method == "cgan":
            if self.d_conditioning is None:
                problems.append("d_conditioning must be projection or concat for cgan")
            if self.aux_weight > 0:
                problems.append("aux_weight must be 0 for cgan, which has no classifier head")
        elif self.d_conditioning is not None:
            problems.append(
                f"d_conditioning applies to cgan only; {self.method} conditions its critic "
                "through the auxiliary classifier head"
            )
        if self.label_smoothing > 0 and self.adversarial_loss != "bce":
            problems.append(
                "label_smoothing softens BCE targets; the "
                f"{self.adversarial_loss} loss has none (use acgan or cgan with adv_loss bce)"
            )
        if self.weight_clip is not None:
            if not wasserstein:
                problems.append("weight_clip is the WGAN critic constraint: use wacgan-gp")
            if self.gp_weight > 0:
                problems.append("weight_clip replaces the gradient penalty: set gp_weight 0")
            if self.spectral_norm:
                problems.append("weight_clip and spectral_norm both constrain the critic: pick one")
        problems += self._schedule_problems() + self._lever_problems()
        problems += self._virtual_label_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _schedule_problems(self) -> list[str]:
        problems = []
        if self.transition_end < self.transition_start:
            problems.append("transition_end must be >= transition_start")
        if self.transition_end > self.steps:
            problems.append(
                f"transition_end ({self.transition_end}) must be at most steps ({self.steps}): "
                "the exported generator must be fully conditional"
            )
        if self.transition_end > 0 and self.d_conditioning == "concat":
            problems.append(
                "transitional conditioning needs a projection or auxiliary-classifier critic "
                "(d_conditioning concat feeds the label as input channels)"
            )
        if self.mode_seeking > 0 and self.batch_size < 2:
            problems.append(
                "mode_seeking compares pairs of images: batch_size must be >= 2 "
                "(or set mode_seeking 0)"
            )
        return problems

    def _lever_problems(self) -> list[str]:
        problems = []
        if self.ada_target is not None and self.adversarial_loss == "wasserstein":
            problems.append(
                "ada_target reads the critic's sign on real images, which a Wasserstein critic "
                "does not make meaningful: use acgan or cgan (bce or hinge)"
            )
        if self.select_by == "recall" and self.holdout_fraction == 0:
            problems.append(
                "select_by recall judges samples on the held-out images: set "
                "holdout_fraction > 0 (or select_by last)"
            )
        if (self.ada_target is not None or self.augment_p < 1) and not self.diffaugment:
            problems.append("augment_p and ada_target need DiffAugment ops (diffaugment is empty)")
        if self.aux_twin and self.method == "cgan":
            problems.append(
                "aux_twin twins the classifier head: cgan has none (use wacgan-gp or acgan)"
            )
        elif self.aux_twin and self.aux_weight == 0:
            problems.append("aux_twin acts through the auxiliary loss: set aux_weight > 0")
        if not self.aux_diffaugment and (
            self.method == "cgan" or self.aux_weight == 0 or not self.diffaugment
        ):
            problems.append(
                "aux_diffaugment false keeps DiffAugment from the class head: it needs a class "
                "head (wacgan-gp or acgan, aux_weight > 0) and DiffAugment ops"
            )
        if self.aux_fake_truncation is not None:
            if self.method == "cgan":
                problems.append(
                    "aux_fake_truncation feeds the critic's class head: cgan has none "
                    "(use wacgan-gp or acgan)"
                )
            elif self.aux_weight == 0:
                problems.append(
                    "aux_fake_truncation acts through the auxiliary loss: set aux_weight > 0"
                )
            if self.aux_twin:
                problems.append(
                    "aux_fake_truncation trains the class head on fakes, which aux_twin keeps "
                    "for real images only: pick one"
                )
        return problems

    def _virtual_label_problems(self) -> list[str]:
        """vcagan's options belong to it alone, and the levers of labelled methods do not
        apply to it (its classifier and P(C) read real images as they are)."""
        if self.method != "vcagan":
            changed = [
                name
                for name in VIRTUAL_LABEL_OPTIONS
                if getattr(self, name) != type(self).model_fields[name].default
            ]
            return [f"{', '.join(changed)} apply to vcagan only"] if changed else []
        levers = {
            "aux_weight": self.aux_weight > 0,
            "aux_twin": self.aux_twin,
            "aux_fake_truncation": self.aux_fake_truncation is not None,
            "gp_weight": self.gp_weight > 0,
            "mode_seeking": self.mode_seeking > 0,
            "label_smoothing": self.label_smoothing > 0,
            "diffaugment": bool(self.diffaugment),
            "ada_target": self.ada_target is not None,
            "transition_end": self.transition_end > 0,
            "select_by": self.select_by != "last",
        }
        used = [name for name, on in levers.items() if on]
        if not used:
            return []
        return [
            f"{', '.join(used)} do not apply to vcagan (its classifier loss is lambda_cls, "
            "its penalties r1_weight and lambda_creg; select_by recall needs labels): "
            "leave them unset"
        ]

    def condition_weight(self, step: int) -> float:
        """The class condition's weight after `step` generator updates (1 without a ramp)."""
        if self.transition_end == 0:
            return 1.0
        if step >= self.transition_end:
            return 1.0
        if step < self.transition_start:
            return 0.0
        return (step - self.transition_start) / (self.transition_end - self.transition_start)

    def selection_due(self, step: int) -> bool:
        """Whether select_by recall evaluates the generator after `step` updates: every
        select_every and at the last step, once the class condition has full weight."""
        if self.select_by == "last" or step < self.transition_end:
            return False
        return step % self.select_every == 0 or step == self.steps

    @field_validator("diffaugment")
    @classmethod
    def _known_ops(cls, value: str) -> str:
        ops = [op.strip() for op in value.split(",") if op.strip()]
        unknown = sorted(set(ops) - set(DIFFAUGMENT_OPS))
        if unknown:
            raise ValueError(f"unknown DiffAugment ops {unknown}; choose from {DIFFAUGMENT_OPS}")
        return ",".join(dict.fromkeys(ops))

    @property
    def adversarial_loss(self) -> Literal["wasserstein", "bce", "hinge"]:
        return "wasserstein" if self.method == "wacgan-gp" else self.adv_loss or "bce"

    @property
    def diffaugment_ops(self) -> list[str]:
        return self.diffaugment.split(",") if self.diffaugment else []
