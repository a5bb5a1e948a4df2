from dagster import DynamicPartitionsDefinition

experiments = DynamicPartitionsDefinition(name="experiments")
campaigns = DynamicPartitionsDefinition(name="campaigns")
