"""Demand forecasting, the scaling decider, backtests and the PredictiveAutoscaler controller."""
