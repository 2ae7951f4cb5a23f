"""One module per concern (predictions, service endpoints), each registering its routes."""
