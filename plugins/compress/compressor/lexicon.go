package compressor

// defaultLexicon expands a query word into words that a conversation uses
// for the same thing: general categories into common members ("pets" →
// dog, cat, …) and everyday near-synonyms. Questions tend to name the
// category ("what sports does she play?") while the turn that answers names
// the member ("I've been playing tennis"), which no lexical matcher sees
// without such a table. Each line is "word: expansion expansion …"; words
// are stemmed like the text, so plural and inflected forms need no line of
// their own. Config.Synonyms adds to this table and Config.NoLexicon
// switches it off.
var defaultLexicon = []string{
	// people and family
	"family: husband wife son daughter kids children mom dad mother father parents brother sister grandma grandpa grandmother grandfather aunt uncle cousin niece nephew partner baby",
	"kid: children son daughter baby toddler boy girl",
	"child: kids son daughter baby toddler boy girl",
	"children: kids son daughter baby boy girl",
	"parent: mom dad mother father",
	"sibling: brother sister",
	"relative: aunt uncle cousin grandma grandpa niece nephew",
	"partner: husband wife boyfriend girlfriend fiance spouse",
	"spouse: husband wife",
	"relationship: dating boyfriend girlfriend married single partner breakup divorce engaged",
	"friend: buddy pal friendship",
	"mentor: teacher coach",
	// animals
	"pet: dog cat puppy kitten turtle hamster fish bird parrot rabbit bunny guinea snake lizard horse",
	"animal: dog cat puppy kitten turtle bird horse fish rabbit snake lizard wildlife",
	// activities and hobbies
	"activity: hobby sport hiking camping swimming running painting dancing reading cooking baking gardening yoga biking cycling climbing skiing surfing fishing pottery volunteering",
	"hobby: painting drawing reading writing cooking baking gardening knitting pottery photography dancing singing hiking camping fishing gaming music guitar piano",
	"sport: soccer football basketball baseball tennis golf hockey volleyball swimming running cycling boxing skiing surfing skating climbing",
	"exercise: workout gym running jogging yoga swimming cycling lifting training",
	"fitness: workout gym running yoga training exercise",
	"martial: karate judo taekwondo kickboxing boxing jiu-jitsu kung fu",
	"outdoor: hiking camping fishing climbing kayaking biking nature park beach mountain trail",
	"art: painting drawing sketch sculpture pottery photography mural canvas poetry",
	"artwork: painting drawing sketch sculpture mural canvas",
	"creative: painting drawing writing music art pottery poetry",
	"music: song band concert guitar piano violin drums singing album",
	"instrument: guitar piano violin drums flute saxophone cello ukulele trumpet bass keyboard",
	"game: video board chess cards puzzle console",
	"book: novel read reading author story series",
	"read: book novel author",
	"movie: film cinema watch",
	"film: movie cinema",
	"show: series tv episode concert performance",
	"event: party festival concert fair conference parade meetup wedding ceremony celebration",
	"celebrate: party birthday anniversary celebration",
	"volunteer: charity shelter donate fundraiser nonprofit",
	"charity: donate fundraiser volunteer nonprofit",
	// food
	"food: meal dinner lunch breakfast cook recipe dish",
	"dessert: cake pie cookies brownies cupcakes pudding tart ice cream chocolate",
	"meal: dinner lunch breakfast dish",
	"drink: coffee tea juice wine beer smoothie",
	"cook: recipe bake dish meal kitchen",
	"bake: cake cookies bread pie muffins",
	// places and travel
	"travel: trip vacation journey visit flight abroad tour",
	"trip: travel vacation journey visit roadtrip",
	"vacation: trip travel holiday getaway",
	"country: america usa canada mexico england france spain italy germany japan china india brazil australia greece ireland",
	"european: england france spain italy germany greece ireland portugal netherlands sweden norway europe",
	"place: city town country park beach",
	"city: town downtown",
	"home: house apartment place",
	"house: home apartment",
	"nature: park forest mountain beach lake hike trail",
	// work and study
	"job: work career position employer company business",
	"work: job career office company business",
	"career: job work profession",
	"business: company store startup shop brand",
	"school: class college university course study degree",
	"education: school college university degree course study class",
	"study: class course school degree learn",
	"class: course lesson workshop",
	// money and possessions
	"money: cash savings salary income pay budget",
	"financial: money savings salary income pay budget",
	"buy: bought purchase",
	"car: vehicle truck drive",
	"vehicle: car truck bike",
	// health and feelings
	"health: doctor hospital sick illness injury therapy",
	"injury: hurt injured accident broke",
	"stress: anxiety pressure overwhelmed destress relax",
	"destress: relax unwind calm",
	"relax: unwind destress calm",
	"feel: feeling emotion",
	// time
	"birthday: born",
	// things
	"gift: present",
	"clothes: shirt dress shoes jacket outfit fashion",
	"photo: picture pic",
	"picture: photo pic",
}
