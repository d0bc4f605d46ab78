"""Training and evaluation runs: posts -> embeddings -> Keras classifier -> registered version.

`run_training` is what `topicq train` and the worker's `topicq demo` call;
`run_evaluation` is `topicq evaluate`. Both migrate the database first
(the explicit prestart step) and embed through the embedding cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.database.migrate import ensure_schema
from shared.errors import DatasetError
from shared.improvement.drift_reference import Reference, compute_reference, save_reference
from shared.improvement.review import ReviewPolicy, flagged_shares
from shared.model import registry
from shared.model.embedders import Embedder, make_embedder, make_embedder_for
from shared.model.embedding_cache import CachedEmbedder, CacheStats
from shared.model.out_of_domain import DomainReference
from shared.model.preprocess import PREPROCESS_VERSION, preprocess
from shared.model.review_calibration import ReviewCalibration, calibrate_review, class_indices
from shared.model.store import ModelMeta, TopicModel
from shared.settings import Settings, get_settings
from trainer.baseline import words_baseline
from trainer.datasets import NEWSGROUPS, Dataset
from trainer.evaluation import compute_metrics, write_report
from trainer.spec import DataSpec
from trainer.training_digests import seen_in_training, write_training_digests

if TYPE_CHECKING:
    from shared.model.classifier import TopicClassifier
    from trainer.finetune import FinetuneConfig, TunedEncoder

log = logging.getLogger(__name__)

# What the registry row keeps of the metrics (the full set is in model.json): `topicq models` shows them.
SUMMARY_METRICS = ("accuracy", "macro_f1", "n", "baseline", "review")


@dataclass(frozen=True)
class TrainConfig:
    """What a training run fits: the defaults are what `topicq train` uses.

    The benchmark (bench/accuracy.py) measures variants of this config, so a
    lever proven there becomes the default by changing one field here.
    """

    embedder: str | None = None  # embedder kind; None = the configured one (EMBEDDER)
    hidden: int = 256
    dropout: float = 0.2
    epochs: int = 100
    # The post's words beside its embedding: TF-IDF of at most `lexical` terms, words and pairs of
    # adjacent words (`lexical_ngrams` 2) of the post as sent (shared/model/lexical.py), read by a
    # linear SVM whose probabilities multiply the embedding branch's, each at the power 1/2
    # (lexical_join "product", lexical_weight 0.5; shared/model/classifier.py).
    # bench/accuracy.py has each lever's rows.
    lexical: int = 300_000
    lexical_l2: float = 0.0
    lexical_scale: float = 10.0  # the "sum" join's row length: how loudly the words speak to the network
    lexical_join: str = "product"  # "product"/"mean": a words branch of its own; "sum": one joint softmax
    lexical_ngrams: int = 2
    lexical_view: str = "text"  # "preprocessed": the words the embedding reads (parentheses dropped)
    lexical_weight: float | None = 0.5  # the words branch's share of the join (None: chosen on validation)
    class_weight: bool = False
    # Self-training: when --per-class leaves training posts unlabeled, those the first model labels
    # with at least this probability join the labelled ones for a second fit (1.0: off). Never a
    # test post. bench/accuracy.py, sci with 100 posts a class: words alone 0.922, with this 0.944.
    self_training: float = 0.9


@dataclass
class ModelInputs:
    """What the classifier sees of a list of posts: their embeddings (of the preprocessed texts) and
    their texts as sent (a words branch takes its own view of them)."""

    vectors: np.ndarray
    texts: list[str] = field(default_factory=list)

    def take(self, rows: slice) -> ModelInputs:
        return ModelInputs(self.vectors[rows], self.texts[rows])


@dataclass(kw_only=True)
class EvalResult:
    name: str
    version: int
    metrics: dict[str, Any]
    cache_hits: int
    cache_misses: int
    wall_seconds: float
    # Posts of the dataset the version was trained on (None: it kept no record), and the accuracy on the rest.
    seen_in_training: int | None = None
    unseen_accuracy: float | None = None


@dataclass(kw_only=True)
class TrainResult(EvalResult):
    directory: Path
    files: list[Path]  # plots and model card
    n_train: int
    fits: list[FitRecord]  # the first fit, then the self-training fit when there was one
    self_trained: int  # unlabeled posts that joined the second fit
    promoted: str | None  # the alias now pointing at this version
    corrections: dict[str, Any] | None = None  # what became of the corrected posts (--with-corrections)
    finetune: dict[str, Any] | None = None  # how the encoder was tuned (--finetune)


def data_fingerprint(data: Dataset) -> str:
    """sha256 over the training posts' ids, texts and labels, in order."""
    digest = hashlib.sha256()
    for row in zip(data.ids, data.texts, data.labels, strict=True):
        digest.update(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()


def embed_posts(settings: Settings, embedder: Embedder, cleaned: list[str],
                progress: bool = True) -> tuple[np.ndarray, CacheStats]:
    """Embed preprocessed texts through the cache, with a progress bar on stderr."""
    from tqdm import tqdm

    with tqdm(total=len(cleaned), desc="embedding", unit="post", disable=not progress) as bar:

        def advance(done: int) -> None:
            bar.update(done)

        cached = CachedEmbedder(embedder, settings.db_url, progress=advance)
        vectors, stats = cached.embed(cleaned), cached.stats
        # Drawn once, by close(): a refresh here too would print the bar's last line twice.
        bar.set_postfix_str(f"{stats.hits} from cache, {stats.misses} new", refresh=False)
    return vectors, stats


def prepare_inputs(settings: Settings, config: TrainConfig, texts: list[str],
                   progress: bool = True, embedder: str | Embedder | None = None,
                   ) -> tuple[ModelInputs, CacheStats, str, int]:
    """Preprocess and embed `texts` for `config`; returns the inputs, cache stats, embedder id and dim."""
    with _embedder(embedder or config.embedder, settings) as encoder:
        cleaned = [preprocess(text) for text in texts]
        vectors, stats = embed_posts(settings, encoder, cleaned, progress)
        return ModelInputs(vectors, list(texts)), stats, encoder.id, encoder.dim


@dataclass(frozen=True)
class FitRecord:
    """One Keras fit, as the plots and the model card show it."""

    title: str  # "fit", or "first fit" and "self-training fit"
    posts: int  # labelled (and pseudo-labelled) posts, validation split included
    history: dict[str, list[float]]
    best_epoch: int  # 1-based: the epoch whose weights were kept

    @property
    def epochs(self) -> int:
        return len(self.history["loss"])


@dataclass
class Fitted:
    classifier: TopicClassifier
    fits: list[FitRecord]
    labelled_texts: list[str]
    self_trained: list[str]  # the unlabeled posts' texts that joined the second fit

    @property
    def trained_texts(self) -> list[str]:
        """Every text the classifier was fitted on."""
        return self.labelled_texts + self.self_trained


def fit_with_self_training(config: TrainConfig, inputs: ModelInputs, labels: list[str], *, seed: int = 0,
                           unlabeled: ModelInputs | None = None) -> Fitted:
    """The classifier `config` describes, fitted on labelled inputs, then again with the unlabeled
    posts it labels confidently (when `unlabeled` has any and self-training is on)."""
    from shared.model.classifier import TopicClassifier

    def fit(x: ModelInputs, y: list[str], title: str,
            temperature: float | None = None) -> tuple[TopicClassifier, FitRecord]:
        classifier = TopicClassifier(hidden=config.hidden, dropout=config.dropout, epochs=config.epochs,
                                     lexical=config.lexical, lexical_l2=config.lexical_l2,
                                     lexical_scale=config.lexical_scale, lexical_join=config.lexical_join,
                                     lexical_ngrams=config.lexical_ngrams, lexical_view=config.lexical_view,
                                     lexical_weight=config.lexical_weight, lexical_temperature=temperature,
                                     class_weight=config.class_weight, seed=seed)
        classifier.fit(x.vectors, y, texts=x.texts)
        return classifier, FitRecord(title, len(y), classifier.history_, classifier.best_epoch_)

    classifier, first = fit(inputs, labels, "first fit")
    if unlabeled is None or config.self_training >= 1.0 or not len(unlabeled.vectors):
        return Fitted(classifier, [replace(first, title="fit")], inputs.texts, [])  # no second fit
    proba = classifier.predict_proba(unlabeled.vectors, unlabeled.texts)
    sure = np.flatnonzero(proba.max(axis=1) >= config.self_training)
    pseudo = [str(label) for label in classifier.classes_[proba[sure].argmax(axis=1)]]
    log.info("self-training: %d of %d unlabeled posts labelled with p >= %.2f",
             len(sure), len(unlabeled.vectors), config.self_training)
    taken = [unlabeled.texts[i] for i in sure]
    both = ModelInputs(np.concatenate([inputs.vectors, unlabeled.vectors[sure]]), inputs.texts + taken)
    # The words' temperature stays the one calibrated on labelled posts: posts the first model found
    # easy enough to label would calibrate it too sharp.
    classifier, second = fit(both, list(labels) + pseudo, "self-training fit",
                             temperature=getattr(classifier, "word_temperature_", None))
    return Fitted(classifier, [first, second], inputs.texts, taken)


def fit_classifier(config: TrainConfig, inputs: ModelInputs, labels: list[str], *, seed: int = 0,
                   unlabeled: ModelInputs | None = None) -> TopicClassifier:
    """The classifier `config` describes, fitted on labelled inputs (see fit_with_self_training)."""
    return fit_with_self_training(config, inputs, labels, seed=seed, unlabeled=unlabeled).classifier


@contextmanager
def _embedder(kind: str | Embedder | None, settings: Settings) -> Iterator[Embedder]:
    """The given embedder, or one built from its kind and closed afterwards."""
    if isinstance(kind, Embedder):
        yield kind
        return
    built = make_embedder(kind, settings)
    try:
        yield built
    finally:
        built.close()


def _training_record(fitted: Fitted, unlabeled: int, fit_seconds: float, seconds: float) -> dict[str, Any]:
    """How the version was fitted, for model.json and the model card."""
    return {
        "fits": [{"title": fit.title, "posts": fit.posts, "epochs": fit.epochs,
                  "best_epoch": fit.best_epoch} for fit in fitted.fits],
        "unlabeled": unlabeled,
        "self_trained": len(fitted.self_trained),
        "fit_seconds": round(fit_seconds, 1),
        "seconds": round(seconds, 1),  # loading, embedding and fitting
    }


def _check_trainable(train: Dataset, test: Dataset) -> None:
    if len(train.classes) < 2:
        raise DatasetError(f"training needs at least two classes, got {train.classes}")
    unknown = sorted(set(test.classes) - set(train.classes))
    if unknown:
        raise DatasetError(f"test posts have labels missing from the training posts: {unknown}")


def _with_corrections(settings: Settings, name: str, train: Dataset, test: Dataset) -> Dataset:
    from shared.improvement.corrections import corrections
    from trainer.corrections import add_corrections

    corrected = corrections(settings.db_url, model_name=name)
    if not corrected:
        raise DatasetError(f"no corrections of model {name!r} to train with (see `topicq review import`)")
    merged, summary = add_corrections(train, test, corrected)
    log.debug("corrections: %s", summary)  # `topicq train` prints them as a sentence
    return merged


def test_reference(classifier: TopicClassifier, x_test: ModelInputs, probabilities: np.ndarray,
                   domain: DomainReference | None, review: ReviewPolicy,
                   calibration: ReviewCalibration | None = None) -> Reference:
    """What `topicq drift` compares live rows with: the version's predictions (`probabilities`) on its
    test split."""
    labels = [str(c) for c in classifier.classes_]
    return compute_reference(probabilities, labels, x_test.vectors,
                             **flagged_shares(probabilities, x_test.vectors, labels, domain, review,
                                              calibration))


def run_training(
    *,
    dataset: str = NEWSGROUPS,
    groups: tuple[str, ...] = (),
    per_class: int | None = None,
    test_per_class: int | None = None,
    test_size: float | None = None,
    text_column: str = "text",
    label_column: str = "label",
    id_column: str | None = "id",
    data_home: str | None = None,
    seed: int = 0,
    name: str | None = None,
    embedder: str | Embedder | None = None,
    promote: bool = False,
    alias: str = registry.DEFAULT_ALIAS,
    hidden: int | None = None,
    epochs: int | None = None,
    self_training: float | None = None,
    with_corrections: bool = False,
    finetune: FinetuneConfig | None = None,
    progress: bool = True,
    settings: Settings | None = None,
) -> TrainResult:
    """Train, evaluate, save and register a new version of model `name`; optionally promote it.

    `with_corrections`: the corrected posts of `name` join the training posts (trainer/corrections.py).
    `finetune`: the local encoder is first tuned on the training posts and saved in the version
    (trainer/finetune.py)."""
    started = time.perf_counter()
    settings = settings or get_settings()
    name = registry.check_model_name(name or settings.model_name)
    spec = DataSpec(dataset=dataset, groups=tuple(groups), per_class=per_class,
                    test_per_class=test_per_class, test_size=test_size, text_column=text_column,
                    label_column=label_column, id_column=id_column, data_home=data_home, seed=seed)
    overrides = (("hidden", hidden), ("epochs", epochs), ("self_training", self_training))
    config = TrainConfig(**{key: value for key, value in overrides if value is not None})  # type: ignore[arg-type]
    train, test, pool = _training_posts(spec, config, settings, name, with_corrections)
    with ExitStack() as stack:
        tuned = None
        if finetune is not None:
            tuned = _tuned_encoder(settings, finetune, embedder, train, seed, progress, stack)
            embedder = tuned.embedder
        encoder = stack.enter_context(_embedder(embedder or config.embedder, settings))
        # One pass, so the embedder is built once: training, test, then unlabeled posts.
        inputs, stats, embedder_id, embedder_dim = prepare_inputs(
            settings, config, train.texts + test.texts + pool, progress, embedder=encoder)
        run = _fit_and_test(config, inputs, train, test, seed=seed, unlabeled=len(pool))
        version, directory, files, meta = _publish_run(
            settings, run, name=name, train=train, test=test, config=config, pool=len(pool),
            embedder=(embedder_id, embedder_dim), tuned=tuned, started=started,
            promote_to=alias if promote else None, encoder_files=_encoder_files(encoder))
    return TrainResult(
        name=name, version=version, metrics=run.metrics, cache_hits=stats.hits, cache_misses=stats.misses,
        wall_seconds=time.perf_counter() - started, directory=directory, files=files,
        n_train=len(train), fits=run.fitted.fits, self_trained=len(run.fitted.self_trained),
        promoted=alias if promote else None, corrections=train.description.get("corrections"),
        finetune=meta.training.get("finetune"),
    )


def _tuned_encoder(settings: Settings, finetune: FinetuneConfig, embedder: str | Embedder | None,
                   train: Dataset, seed: int, progress: bool, stack: ExitStack) -> TunedEncoder:
    """The encoder tuned on the training posts, its file in a work directory that `stack` removes
    (the version gets its own copy)."""
    from trainer.finetune import check_tunable, tune_encoder

    check_tunable(embedder)
    settings.models_path.mkdir(parents=True, exist_ok=True)
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".finetune-",
                                                                   dir=settings.models_path)))
    return tune_encoder([preprocess(text) for text in train.texts], train.labels, workdir, finetune,
                        serving_tokens=settings.local_model_max_tokens, seed=seed, progress=progress)


def _encoder_files(embedder: Embedder) -> tuple[Path, Path] | None:
    """The ONNX encoder file and tokenizer the posts were embedded with, which the version keeps (so a
    worker without torch or the packaged weights serves it); None for the other embedders."""
    from shared.model.embedders.onnx import OnnxEmbedder

    if not isinstance(embedder, OnnxEmbedder):
        return None
    return embedder.encoder_file(), embedder.tokenizer_file()


def _publish_run(settings: Settings, run: _Run, *, name: str, train: Dataset, test: Dataset,
                 config: TrainConfig, pool: int, embedder: tuple[str, int], tuned: TunedEncoder | None,
                 started: float, promote_to: str | None, encoder_files: tuple[Path, Path] | None = None,
                 ) -> tuple[int, Path, list[Path], ModelMeta]:
    """The run's model card data, then the version published (see _publish)."""
    training = _training_record(run.fitted, pool, run.fit_seconds, time.perf_counter() - started)
    if tuned is not None:
        training["finetune"] = tuned.record
    meta = ModelMeta(
        name=name, version=0, labels=list(run.classifier.classes_),
        embedder_id=embedder[0], embedder_dim=embedder[1], preprocess_version=PREPROCESS_VERSION,
        data_fingerprint=data_fingerprint(train), created_at=datetime.now(UTC).isoformat(),
        hyperparameters={"self_training": config.self_training}, metrics=run.metrics,
        dataset={"train": train.description, "test": test.description}, training=training,
    )
    version, directory, files = _publish(settings, meta, run, promote_to=promote_to,
                                         encoder_files=encoder_files)
    return version, directory, files, meta


def _training_posts(spec: DataSpec, config: TrainConfig, settings: Settings, name: str,
                    with_corrections: bool) -> tuple[Dataset, Dataset, list[str]]:
    """The training and test posts, and the unlabeled texts for self-training (none when it is off)."""
    train, test, unlabeled = spec.training_sets()
    ensure_schema(settings.db_url)
    if with_corrections:
        train = _with_corrections(settings, name, train, test)
    _check_trainable(train, test)
    return train, test, unlabeled if config.self_training < 1.0 else []


@dataclass
class _Run:
    """A fitted classifier and how it did on the test posts."""

    fitted: Fitted
    x_train: ModelInputs
    x_test: ModelInputs
    test_probabilities: np.ndarray
    metrics: dict[str, Any]
    fit_seconds: float
    review: ReviewCalibration

    @property
    def classifier(self) -> TopicClassifier:
        return self.fitted.classifier


def _review_reference(classifier: TopicClassifier, x_train: ModelInputs, labels: list[str],
                      unlabeled: ModelInputs) -> tuple[np.ndarray, np.ndarray]:
    """The training posts' vectors and class indices (the model's classes' order): the labelled posts'
    own, the class the model gives each unlabeled one."""
    classes = class_indices(classifier.classes_, labels)
    if len(unlabeled.vectors):
        guessed = classifier.predict_proba(unlabeled.vectors, unlabeled.texts).argmax(axis=1)
        classes = np.concatenate([classes, guessed.astype(np.int32)])
    return np.concatenate([x_train.vectors, unlabeled.vectors]), classes


def _fit_and_test(config: TrainConfig, inputs: ModelInputs, train: Dataset, test: Dataset, *, seed: int,
                  unlabeled: int) -> _Run:
    """Fit on the training inputs (then self-train on the last `unlabeled` ones) and score the test ones."""
    seen = len(train) + len(test)
    x_train, x_test = inputs.take(slice(0, len(train))), inputs.take(slice(len(train), seen))
    started = time.perf_counter()
    fitted = fit_with_self_training(config, x_train, train.labels, seed=seed,
                                    unlabeled=inputs.take(slice(seen, None)) if unlabeled else None)
    fit_seconds = time.perf_counter() - started
    # Once: the metrics and the drift reference both read the test posts' probabilities.
    probabilities = fitted.classifier.predict_proba(x_test.vectors, x_test.texts)
    predicted = fitted.classifier.classes_[probabilities.argmax(axis=1)]
    metrics = compute_metrics(test.labels, predicted, list(fitted.classifier.classes_))
    # The review thresholds: distances from the training posts of a post's class (the unlabeled ones
    # included, under the class the model gives them), and both scores of the test posts (held out from
    # every fit) kept, so any REVIEW_RATE maps to thresholds.
    reference, classes = _review_reference(fitted.classifier, x_train, train.labels,
                                           inputs.take(slice(seen, None)))
    review = calibrate_review(reference, probabilities, x_test.vectors,
                              held_out=f"the test split ({len(test)} posts)", train_classes=classes)
    metrics["review"] = review.summary(test.labels, predicted)
    metrics["baseline"] = words_baseline(x_train.texts, train.labels, x_test.texts, test.labels)
    return _Run(fitted, x_train, x_test, probabilities, metrics, fit_seconds, review)


def _publish(settings: Settings, meta: ModelMeta, run: _Run, *,
             promote_to: str | None, encoder_files: tuple[Path, Path] | None = None,
             ) -> tuple[int, Path, list[Path]]:
    """Publish the version with what goes beside it: training digests, drift reference, model card.
    Its review calibration (run.review) replaces the centroid radius of domain.json, which it no
    longer writes."""
    files: list[Path] = []

    def beside_the_model(directory: Path) -> None:
        write_training_digests(directory, [preprocess(text) for text in run.fitted.trained_texts])
        review = ReviewPolicy.from_settings(settings)  # what `topicq drift` compares live rows with
        save_reference(directory, test_reference(run.classifier, run.x_test, run.test_probabilities, None,
                                                 review, run.review))
        files.extend(write_report(directory, asdict(meta), [asdict(fit) for fit in run.fitted.fits]))

    encoder, tokenizer = encoder_files or (None, None)
    model = TopicModel(meta, run.classifier, encoder=encoder, tokenizer=tokenizer, review=run.review)
    version, directory = registry.publish_version(
        settings.db_url, settings.models_path, model,
        metrics={key: run.metrics[key] for key in SUMMARY_METRICS if key in run.metrics},
        promote_to=promote_to,
        beside=beside_the_model)
    return version, directory, files


def run_evaluation(
    ref: str,
    *,
    dataset: str = NEWSGROUPS,
    groups: tuple[str, ...] = (),
    test_per_class: int | None = None,
    test_size: float | None = None,
    text_column: str = "text",
    label_column: str = "label",
    id_column: str | None = "id",
    data_home: str | None = None,
    seed: int = 0,
    embedder: str | Embedder | None = None,
    progress: bool = True,
    settings: Settings | None = None,
) -> EvalResult:
    """Metrics of the registered model `ref` (NAME, NAME:VERSION or NAME:ALIAS) on a dataset.

    The embedder defaults to the kind the model was trained with; any other
    embedder is refused, since its vectors mean nothing to the model.
    """
    started = time.perf_counter()
    settings = settings or get_settings()
    ensure_schema(settings.db_url)
    info = registry.resolve_ref(settings.db_url, ref)
    loaded = registry.load(settings.db_url, name=info.name, version=info.version)
    spec = DataSpec(dataset=dataset, groups=tuple(groups), test_per_class=test_per_class,
                    test_size=test_size, text_column=text_column, label_column=label_column,
                    id_column=id_column, data_home=data_home, seed=seed)
    data = spec.evaluation_set(loaded.meta.labels)
    unknown = sorted(set(data.classes) - set(loaded.meta.labels))
    if unknown:
        raise DatasetError(f"{loaded.key} knows {loaded.meta.labels}; the dataset also has {unknown}")
    with _embedder(embedder or make_embedder_for(loaded.meta.embedder_id, settings, Path(info.path)),
                   settings) as encoder:
        loaded.check_embedder(encoder.id)
        texts = [preprocess(text) for text in data.texts]
        vectors, stats = embed_posts(settings, encoder, texts, progress)
    predicted = loaded.classifier.predict(vectors, data.texts if loaded.classifier.uses_text else None)
    metrics = compute_metrics(data.labels, predicted, loaded.meta.labels)
    seen = seen_in_training(Path(info.path), texts)
    return EvalResult(name=info.name, version=info.version, metrics=metrics, cache_hits=stats.hits,
                      cache_misses=stats.misses, wall_seconds=time.perf_counter() - started,
                      seen_in_training=None if seen is None else sum(seen),
                      unseen_accuracy=_unseen_accuracy(data.labels, predicted, seen))


def _unseen_accuracy(truth: list[str], predicted: np.ndarray, seen: list[bool] | None) -> float | None:
    """Accuracy on the posts the version was not trained on; None without such posts or a record."""
    right = [p == t for p, t, s in zip(predicted, truth, seen or [], strict=False) if not s]
    return float(np.mean(right)) if right else None
