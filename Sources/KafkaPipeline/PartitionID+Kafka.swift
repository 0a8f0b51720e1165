import Kafka
import Pipeline

extension PartitionID {
    init(_ partition: KafkaTopicPartition) {
        self.init(topic: partition.topic, partition: partition.partition)
    }

    var kafka: KafkaTopicPartition {
        KafkaTopicPartition(topic: topic, partition: partition)
    }
}
