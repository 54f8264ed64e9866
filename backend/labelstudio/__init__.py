"""Everything that knows Label Studio's JSON or API: label configs, tasks, images, the SDK gateway."""
