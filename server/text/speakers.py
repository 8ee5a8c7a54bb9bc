"""Who spoke: speaker labels from speaker embeddings (engines/speakers.py).

Sans-I/O, numbers only. Live (`OnlineSpeakers`): each final's embedding joins
the nearest speaker's centroid, or opens a new speaker when it is far from
all of them and long enough to be sure; a final whose windows change speaker
part-way is split into turns at the change. Files (`cluster`): agglomerative
clustering over every segment of the file at the end, so the labels agree
from start to end."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Tuned on the shared corpus's clips (resemblyzer, whole clips): the same
# speaker's utterances score 0.78-0.97 cosine (LJ Speech 0.84-0.97, a LibriVox
# reader 0.78-0.92), different speakers 0.39-0.71.
SAME_SPEAKER = 0.74           # below this similarity to every centroid: someone new...
MIN_NEW_SPEAKER_S = 1.2       # ...if the utterance is long enough to say so
MIN_TURN_S = 1.5              # a change inside a final needs this much speech on each side
CHANGE_BELOW = 0.70           # windows either side of a change are at most this alike
MAX_SPEAKERS = 10


def unit(v) -> np.ndarray:
    v = np.asarray(v, np.float32)
    n = float(np.linalg.norm(v))
    return v / n if n else v


def label(index: int) -> str:
    return f"S{index + 1}"


@dataclass
class Turn:
    start_ms: int                 # on the utterance's own clock (0: its audio's start)
    end_ms: int
    embedding: np.ndarray


def turns(windows: list[tuple[int, int, np.ndarray]], embedding, duration_ms: int) -> list[Turn]:
    """The utterance as one turn, or two where its windows change speaker:
    the split that makes the two sides' mean embeddings least alike, if they
    are unlike enough, each side has MIN_TURN_S of windows and every window
    is nearer its own side."""
    whole = [Turn(0, duration_ms, unit(embedding))]
    if len(windows) < 2:
        return whole
    vectors = np.stack([unit(w) for _, _, w in windows])
    best, best_score = None, CHANGE_BELOW
    step_s = (windows[1][0] - windows[0][0]) / 1000     # windows overlap: each stands for one step of audio
    for k in range(1, len(windows)):
        if k * step_s < MIN_TURN_S or (len(windows) - k) * step_s < MIN_TURN_S:
            continue
        left, right = unit(vectors[:k].mean(0)), unit(vectors[k:].mean(0))
        score = float(left @ right)
        # Each window must sound more like its own side: a side that mixes both voices is no turn.
        coherent = bool(np.all(vectors[:k] @ left > vectors[:k] @ right) and
                        np.all(vectors[k:] @ right > vectors[k:] @ left))
        if score < best_score and coherent:
            best, best_score = k, score
    if best is None:
        return whole
    # The change: between the last left window's end and the first right window's start.
    at = (windows[best][0] + windows[best - 1][1]) // 2
    return [Turn(0, at, unit(vectors[:best].mean(0))), Turn(at, duration_ms, unit(vectors[best:].mean(0)))]


class OnlineSpeakers:
    def __init__(self, max_speakers: int | None = None, same_speaker: float = SAME_SPEAKER,
                 min_new_s: float = MIN_NEW_SPEAKER_S):
        self.max_speakers = max_speakers or MAX_SPEAKERS
        self.same_speaker = same_speaker
        self.min_new_s = min_new_s
        self.centroids: list[np.ndarray] = []
        self.weights: list[float] = []

    def assign(self, embedding, seconds: float) -> str:
        e = unit(embedding)
        if self.centroids:
            similarity = np.array([float(c @ e) for c in self.centroids])
            nearest = int(similarity.argmax())
            new = (similarity[nearest] < self.same_speaker and seconds >= self.min_new_s
                   and len(self.centroids) < self.max_speakers)
        else:
            new = True
        if new:
            self.centroids.append(e)
            self.weights.append(seconds)
            return label(len(self.centroids) - 1)
        # The centroid moves toward what it just heard, weighted by how much.
        w = self.weights[nearest]
        self.centroids[nearest] = unit(self.centroids[nearest] * w + e * seconds)
        self.weights[nearest] = w + seconds
        return label(nearest)


def cluster(embeddings: list[np.ndarray], speakers: int | None = None,
            same_speaker: float = SAME_SPEAKER) -> list[str]:
    """Labels for a whole file's segments: average-linkage agglomerative
    clustering on cosine similarity, merged down to `speakers` clusters when
    given, else while the two most alike clusters are at least `same_speaker`
    alike on average. S1 is whoever spoke first."""
    if not embeddings:
        return []
    vectors = np.stack([unit(e) for e in embeddings]).astype(np.float64)
    similarity = vectors @ vectors.T           # between clusters: the mean over their members' pairs
    sizes = np.ones(len(vectors))
    members = [[i] for i in range(len(vectors))]
    alive = np.ones(len(vectors), bool)
    np.fill_diagonal(similarity, -np.inf)
    while alive.sum() > 1:
        masked = np.where(np.outer(alive, alive), similarity, -np.inf)
        a, b = np.unravel_index(int(masked.argmax()), masked.shape)
        if speakers is not None and alive.sum() <= speakers:
            break
        if speakers is None and masked[a, b] < same_speaker:
            break
        # Merge b into a; a's similarity to every other cluster is the size-weighted mean (average linkage).
        merged = (similarity[a] * sizes[a] + similarity[b] * sizes[b]) / (sizes[a] + sizes[b])
        similarity[a], similarity[:, a] = merged, merged
        similarity[a, a] = -np.inf
        sizes[a] += sizes[b]
        members[a] += members[b]
        alive[b] = False
    cluster_of = {}
    for c in np.flatnonzero(alive):
        for i in members[c]:
            cluster_of[i] = int(c)
    names: dict[int, str] = {}
    for i in range(len(vectors)):
        names.setdefault(cluster_of[i], label(len(names)))
    return [names[cluster_of[i]] for i in range(len(vectors))]
