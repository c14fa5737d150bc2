// KafkaAdmin.java — the two cluster operations the chaos storm needs that librdkafka 2.0 lacks,
// through Kafka's own Admin client (kafka-clients, in the jars ops/kafka.sh caches). Run as a
// single-file program, no build step:
//   java -cp "$LIB/*" tests/chaos/KafkaAdmin.java BOOTSTRAP controller
//       prints the node id of the active KRaft controller (the metadata quorum's leader)
//   java -cp "$LIB/*" tests/chaos/KafkaAdmin.java BOOTSTRAP elect-preferred TOPIC...
//       preferred-leader election on every partition of TOPIC(s) (as kafka-leader-election
//       --election-type preferred); prints "topic partition result" per partition
// Exit 1 on an error (timeouts: 60 s per call: a loaded test machine needs them).
import java.util.*;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.TopicPartition;

public class KafkaAdmin {
    public static void main(String[] a) throws Exception {
        if (a.length < 2) {
            System.err.println("usage: KafkaAdmin BOOTSTRAP controller | elect-preferred TOPIC...");
            System.exit(2);
        }
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, a[0]);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "30000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "60000");
        try (Admin ad = Admin.create(p)) {
            if (a[1].equals("controller")) {
                QuorumInfo q = ad.describeMetadataQuorum().quorumInfo().get(60, TimeUnit.SECONDS);
                System.out.println(q.leaderId());
            } else if (a[1].equals("elect-preferred")) {
                List<String> topics = Arrays.asList(a).subList(2, a.length);
                Set<TopicPartition> tps = new HashSet<>();
                for (TopicDescription d : ad.describeTopics(topics).allTopicNames()
                         .get(60, TimeUnit.SECONDS).values())
                    d.partitions().forEach(i -> tps.add(new TopicPartition(d.name(), i.partition())));
                ElectLeadersResult r = ad.electLeaders(ElectionType.PREFERRED, tps);
                for (Map.Entry<TopicPartition, Optional<Throwable>> e :
                         r.partitions().get(60, TimeUnit.SECONDS).entrySet())
                    System.out.println(e.getKey().topic() + " " + e.getKey().partition() + " "
                        + e.getValue().map(t -> t.getClass().getSimpleName()).orElse("elected"));
            } else {
                System.err.println("unknown command " + a[1]);
                System.exit(2);
            }
        } catch (Exception e) {
            System.err.println("KafkaAdmin: " + e);
            System.exit(1);
        }
    }
}
