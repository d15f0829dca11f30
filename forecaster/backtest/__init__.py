"""prescale: backtest."""
