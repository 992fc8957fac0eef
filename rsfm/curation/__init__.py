"""Dataset builders that run models: caption purification, SQA datasets, segmenter zoo."""
