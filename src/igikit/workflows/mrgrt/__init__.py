"""MR-linac motion management: latency-compensating respiratory motion prediction."""

from igikit.workflows.mrgrt.prediction import (
    BEST_METHOD,
    METHODS,
    AnalogueForecaster,
    KalmanPredictor,
    LastValuePredictor,
    OnlineEnsemblePredictor,
    PredictionMetrics,
    Predictor,
    RLSPredictor,
    SlidingLinearRegression,
    evaluate,
    make_predictor,
    predict_trace,
    resolve_method,
    run_predictor,
    truth_at_horizon,
)

__all__ = [
    "BEST_METHOD",
    "METHODS",
    "AnalogueForecaster",
    "KalmanPredictor",
    "LastValuePredictor",
    "OnlineEnsemblePredictor",
    "PredictionMetrics",
    "Predictor",
    "RLSPredictor",
    "SlidingLinearRegression",
    "evaluate",
    "make_predictor",
    "predict_trace",
    "resolve_method",
    "run_predictor",
    "truth_at_horizon",
]
